"""`remediator`: serve the webhook, explain a payload's decision, or check a config.

    remediator serve --config vigil.yaml [--listen 127.0.0.1:9095] [--insecure-no-auth]
    remediator explain --config vigil.yaml payload.json
    remediator check-config vigil.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path

from remediator.config import Config, ConfigError, load_config
from vigil_common.hostport import hostport_arg

log = logging.getLogger("remediator")
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _die(message: str) -> int:
    print(f"remediator: {message}", file=sys.stderr)
    return 2


def _kube(config: Config):
    """The cluster client, or None where there is none (allowed in dry-run only)."""
    from remediator.cluster.kube import Kube

    if config.kubeconfig:
        return Kube(os.path.expanduser(config.kubeconfig), event_namespace=config.event_namespace,
                    node_selector=config.node_selector)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Kube(None, event_namespace=config.event_namespace, node_selector=config.node_selector)
    return None


def _leader(config: Config, kube, on_change):
    """A Lease elector whenever Vigil acts on a cluster (whatever the ledger backend), so two
    replicas never act at once; AlwaysLeader only without a cluster (dry-run)."""
    from remediator.cluster.lease import AlwaysLeader, LeaseElector

    if kube is None or not config.leader_election.enabled:
        return AlwaysLeader()
    settings = config.leader_election
    identity = settings.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    if not settings.namespace:
        settings = dataclasses.replace(settings, namespace=_own_namespace())
    return LeaseElector(kube.api, settings, identity, on_change=on_change)


def _own_namespace() -> str:
    try:
        return Path(SA_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


def _ledger(config: Config, kube):
    """The ledger backend the config names: SQLite (one replica) or VigilIncident objects."""
    if config.ledger.backend == "kubernetes":
        from remediator.cluster.incidents_api import IncidentsAPI
        from remediator.store.kubernetes import KubernetesLedger

        if kube is None:
            raise ValueError("ledger.backend kubernetes needs a cluster (kubernetes.kubeconfig or in-cluster)")
        return KubernetesLedger(IncidentsAPI(kube.api, config.ledger.namespace), retention=config.ledger.retention)
    from remediator.store.ledger import SQLiteLedger

    return SQLiteLedger(config.ledger_path)


def serve(args: argparse.Namespace) -> int:
    from waitress import create_server

    from remediator.runtime import logs
    from remediator.runtime.engine import Engine
    from remediator.runtime.metrics import Metrics
    from remediator.web.app import create_app

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
        ledger = _ledger(config, kube)
    except Exception as exc:
        return _die(f"cannot open the ledger ({config.ledger.backend}): {exc}")
    metrics = Metrics(ledger.counts_by_status)

    def leadership_changed(leading: bool) -> None:  # called from the lease thread, started after the engine
        metrics.leader.set(1 if leading else 0)
        engine.wake()

    leader = _leader(config, kube, leadership_changed)
    if hasattr(ledger, "set_token") and hasattr(leader, "token"):
        ledger.set_token(leader.token)  # claims carry (holder, term): a split brain cannot run an action twice
    engine = Engine(config, ledger, kube, metrics, leader=leader)
    if hasattr(ledger, "set_listener"):
        ledger.set_listener(engine.wake)  # work recorded by another replica reaches the leader through the watch
    app = create_app(config, ledger, engine, metrics, insecure_no_auth=args.insecure_no_auth)
    host, port = args.listen or config.listen
    try:
        server = create_server(app, host=host, port=port, threads=8, ident="vigil",
                               max_request_body_size=config.max_body_bytes + 1024, clear_untrusted_proxy_headers=True)
    except OSError as exc:
        return _die(f"cannot listen on {host}:{port}: {exc.strerror}")
    if hasattr(leader, "start"):
        leader.start()
    engine.start()
    log.info("remediator listening on http://%s:%s (dry_run=%s, auth=%s, ledger=%s, identity=%s)", host,
             server.effective_port, config.safety.dry_run, "off" if args.insecure_no_auth else "on",
             config.ledger_path if config.ledger.backend == "sqlite" else f"kubernetes:{config.ledger.namespace}",
             leader.identity)
    if args.insecure_no_auth:
        log.warning("webhook authentication is OFF (--insecure-no-auth)")

    def stop(*_: object) -> None:
        threading.Thread(target=server.close, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(OSError):  # closed by the signal handler
        server.run()
    if hasattr(leader, "stop"):
        leader.stop(release=True)  # stop acting first, then hand the lease over
    engine.stop()
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
    cluster, history, state, kube = ClusterView(available=False), [], SafetyState(), None
    try:
        kube = _kube(config)
        if kube is not None:
            cluster = kube.cluster_view()
    except Exception as exc:  # no cluster at hand is normal for explain
        print(f"# cluster view unavailable ({type(exc).__name__}); budget and node checks skipped")
    try:  # the history and safety state the engine would see, from whichever backend holds them
        ledger = None
        if config.ledger.backend == "kubernetes" and kube is not None:
            from remediator.cluster.incidents_api import IncidentsAPI
            from remediator.store.kubernetes import KubernetesLedger

            ledger = KubernetesLedger(IncidentsAPI(kube.api, config.ledger.namespace), watch=False)
        elif config.ledger.backend == "sqlite" and os.path.exists(config.ledger_path):
            ledger = SQLiteLedger(config.ledger_path)
        if ledger is not None:
            history = ledger.history(now - dt.timedelta(seconds=config.history_window))
            state = read_safety_state(ledger)
    except Exception as exc:
        print(f"# ledger unavailable ({type(exc).__name__}); history, budget in flight and breaker not used")
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
    le = config.leader_election
    election = (f"lease {le.namespace or '<own namespace>'}/{le.name} "
                f"{le.lease_duration:g}/{le.renew_deadline:g}/{le.retry_period:g}s" if le.enabled else "off")
    print(f"{args.config}: ok ({len(config.rules)} rules, dry_run={config.safety.dry_run}, "
          f"auth={'configured' if config.auth.configured else 'NOT configured'}, ledger={config.ledger.backend}, "
          f"leader_election={election})")
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
