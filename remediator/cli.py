"""`remediator`: serve the webhook, explain a payload's decision, or check a config.

    remediator serve --config vigil.yaml [--listen 127.0.0.1:9095] [--insecure-no-auth]
    remediator explain --config vigil.yaml payload.json
    remediator check-config vigil.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from remediator.config import Config, ConfigError, load_config
from vigil_common.hostport import hostport_arg

log = logging.getLogger("remediator")
ENGINE_STOP_TIMEOUT = 8.0  # seconds for running actions to reach a safe point; Kubernetes kills at 30


def _die(message: str) -> int:
    print(f"remediator: {message}", file=sys.stderr)
    return 2


def _kube(config: Config):
    """The cluster client, or None where there is none (allowed in dry-run only)."""
    from remediator.cluster.kube import Kube, RetryPolicy

    retry = RetryPolicy(request_timeout=config.kube_request_timeout, deadline=config.action_deadline)
    if config.kubeconfig:
        return Kube(os.path.expanduser(config.kubeconfig), event_namespace=config.event_namespace,
                    node_selector=config.node_selector, retry=retry)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Kube(None, event_namespace=config.event_namespace, node_selector=config.node_selector, retry=retry)
    return None


def _cache(config: Config, kube, metrics):
    """The watch-fed cluster cache decisions read: nodes always; namespaces and pods only if a
    rule acts on namespaced objects or pods."""
    if kube is None:
        return None
    from remediator.cluster.cache import ClusterCache
    from remediator.domain.policy import ACTIONS

    types = {a.type for r in config.rules for a in (*r.actions, *r.escalate.steps)}
    cache = ClusterCache(kube, namespaces=any(ACTIONS[t].target != ("node",) for t in types),
                         pods=bool(types & {"restart_pod", "quarantine_pod"}))
    metrics.watch_cache(cache.staleness, lambda: {i.res.name: len(i.items) for i in cache.informers})
    metrics.count_kube_requests(lambda: kube.requests)
    cache.start()
    return cache


def serve(args: argparse.Namespace) -> int:
    from remediator.runtime import logs
    from remediator.runtime.engine import Engine
    from remediator.runtime.metrics import Metrics
    from remediator.store.ledger import SQLiteLedger
    from remediator.web.app import create_app
    from remediator.web.server import close as close_server
    from remediator.web.server import make_server

    logs.setup(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _die(str(exc))
    if not config.auth.configured and not args.insecure_no_auth:
        return _die(f"{args.config}: no webhook credentials configured (auth.bearer_token_file/_env or "
                    "auth.basic_auth); refusing to start. Use --insecure-no-auth only for local experiments.")
    kube = _kube(config)
    if kube is None and not config.safety.dry_run:
        return _die(f"{args.config}: no Kubernetes configuration (kubernetes.kubeconfig, or run in a cluster); "
                    "only safety.dry_run may run without one")
    try:
        ledger = SQLiteLedger(config.ledger_path)
    except Exception as exc:
        return _die(f"cannot open the ledger {config.ledger_path}: {exc}")
    metrics = Metrics(ledger.counts_by_status)
    cache = _cache(config, kube, metrics)
    engine = Engine(config, ledger, kube, metrics, cache=cache)
    draining = threading.Event()
    app = create_app(config, ledger, engine, metrics, insecure_no_auth=args.insecure_no_auth, draining=draining)
    host, port = args.listen or config.listen
    try:
        server = make_server(app, host=host, port=port, max_body_bytes=config.max_body_bytes)
    except OSError as exc:
        return _die(f"cannot listen on {host}:{port}: {exc.strerror}")
    if cache is not None and not cache.wait_synced(5.0):
        log.warning("the cluster cache is not synced yet; decisions defer until it is")
    engine.start()
    log.info("remediator listening on http://%s:%s (dry_run=%s, auth=%s, ledger=%s)", host,
             server.effective_port, config.safety.dry_run, "off" if args.insecure_no_auth else "on",
             config.ledger_path)
    if args.insecure_no_auth:
        log.warning("webhook authentication is OFF (--insecure-no-auth)")

    def shutdown() -> None:
        """Readiness is off; intake keeps answering (what arrives is recorded and decided after the
        restart) while running actions stop at their next safe point; then the listener closes."""
        started = time.monotonic()
        engine.stop(timeout=ENGINE_STOP_TIMEOUT)
        time.sleep(max(config.shutdown_delay - (time.monotonic() - started), 0.0))
        close_server(server)
        log.info("stopped in %.1f s", time.monotonic() - started)

    def stop(signum: int, _: object) -> None:
        if not draining.is_set():
            log.info("%s: shutting down (readiness off, actions left resumable)", signal.Signals(signum).name)
            draining.set()
            threading.Thread(target=shutdown, name="vigil-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(OSError):  # closed by shutdown()
        server.run()
    engine.stop(timeout=1.0)
    return 0


def explain(args: argparse.Namespace) -> int:
    from remediator.domain.decide import decide
    from remediator.domain.models import ClusterView, Incident, SafetyState
    from remediator.domain.payload import PayloadError, parse
    from remediator.runtime.engine import read_safety_state
    from remediator.store.ledger import SQLiteLedger

    try:
        config = load_config(args.config)
        body = Path(args.payload).read_bytes() if args.payload != "-" else sys.stdin.buffer.read()
        note = parse(body)
    except ConfigError as exc:
        return _die(str(exc))
    except OSError as exc:
        return _die(f"{args.payload}: {exc.strerror}")
    except PayloadError as exc:
        return _die(f"{args.payload}: {exc.error}: {exc.detail}")
    now = dt.datetime.now(dt.UTC)
    cluster, history, state = ClusterView(available=False), [], SafetyState()
    try:
        kube = _kube(config)
        if kube is not None:
            cluster = kube.cluster_view()
    except Exception as exc:  # no cluster at hand is normal for explain
        print(f"# cluster view unavailable ({type(exc).__name__}); budget and node checks skipped")
    if os.path.exists(config.ledger_path):
        ledger = SQLiteLedger(config.ledger_path)
        history = ledger.history(now - dt.timedelta(seconds=config.history_window))
        state = read_safety_state(ledger)
    results = []
    for a in note.alerts:
        incident = Incident(a.fingerprint, a.starts_at, a.labels, a.annotations, a.status)
        d = decide(incident, config.rules, history, cluster, config.safety, state, now)
        results.append({"alert": a.labels, "outcome": d.outcome, "rule": d.rule, "reason": d.reason,
                        "detail": d.detail, "actions": [vars(p) for p in d.actions], "trace": list(d.trace)})
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for r in results:
            print(f"== {r['alert'].get('alertname', '?')} {json.dumps(r['alert'], sort_keys=True)}")
            for line in r["trace"]:
                print(f"   {line}")
            print(f"   => {r['outcome']}" + (f" ({r['reason']}: {r['detail']})" if r["reason"] else ""))
    return 0


def check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _die(str(exc))
    print(f"{args.config}: ok ({len(config.rules)} rules, dry_run={config.safety.dry_run}, "
          f"auth={'configured' if config.auth.configured else 'NOT configured'})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remediator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the webhook receiver and the engine")
    s.add_argument("--config", required=True)
    s.add_argument("--listen", type=hostport_arg, default=None, help="HOST:PORT (default from config, 127.0.0.1:9095)")
    s.add_argument("--insecure-no-auth", action="store_true", help="accept unauthenticated webhooks (local only)")
    s.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    s.set_defaults(func=serve)
    e = sub.add_parser("explain", help="print the decision trace for a payload without acting")
    e.add_argument("--config", required=True)
    e.add_argument("--json", action="store_true")
    e.add_argument("payload", help="an Alertmanager v4 webhook body (file, or - for stdin)")
    e.set_defaults(func=explain)
    c = sub.add_parser("check-config", help="validate a config")
    c.add_argument("config")
    c.set_defaults(func=check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
