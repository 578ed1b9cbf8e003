"""`remediator`: serve the webhook, explain a payload's decision, or check a config.

    remediator serve --config vigil.yaml [--listen 127.0.0.1:9095] [--insecure-no-auth]
    remediator explain --config vigil.yaml payload.json
    remediator check-config vigil.yaml
    remediator example-config [NAME | --list | --write DIR]
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
from pathlib import Path

from remediator.config import Config, ConfigError, load_config
from vigil_common.hostport import hostport_arg

log = logging.getLogger("remediator")


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


def serve(args: argparse.Namespace) -> int:
    from waitress import create_server

    from remediator.runtime import logs
    from remediator.runtime.engine import Engine
    from remediator.runtime.metrics import Metrics
    from remediator.store.ledger import SQLiteLedger
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
        ledger = SQLiteLedger(config.ledger_path)
    except Exception as exc:
        return _die(f"cannot open the ledger {config.ledger_path}: {exc}")
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, kube, metrics)
    app = create_app(config, ledger, engine, metrics, insecure_no_auth=args.insecure_no_auth)
    host, port = args.listen or config.listen
    try:
        server = create_server(app, host=host, port=port, threads=8, ident="vigil",
                               max_request_body_size=config.max_body_bytes + 1024, clear_untrusted_proxy_headers=True)
    except OSError as exc:
        return _die(f"cannot listen on {host}:{port}: {exc.strerror}")
    engine.start()
    log.info("remediator listening on http://%s:%s (dry_run=%s, auth=%s, ledger=%s)", host,
             server.effective_port, config.safety.dry_run, "off" if args.insecure_no_auth else "on",
             config.ledger_path)
    if args.insecure_no_auth:
        log.warning("webhook authentication is OFF (--insecure-no-auth)")

    def stop(*_: object) -> None:
        threading.Thread(target=server.close, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(OSError):  # closed by the signal handler
        server.run()
    engine.stop()
    return 0


def _cluster_and_history(config: Config, now: dt.datetime):
    from remediator.domain.models import ClusterView, SafetyState
    from remediator.runtime.engine import read_safety_state
    from remediator.store.ledger import SQLiteLedger

    cluster, history, state = ClusterView(available=False), [], SafetyState()
    try:
        kube = _kube(config)
        if kube is not None:
            from remediator.cluster.view import read_cluster_view

            cluster = read_cluster_view(kube)
    except Exception as exc:  # no cluster at hand is normal for explain
        print(f"# cluster view unavailable ({type(exc).__name__}); budget and node checks skipped")
    if os.path.exists(config.ledger_path):
        ledger = SQLiteLedger(config.ledger_path)
        history = ledger.history(now - dt.timedelta(seconds=config.history_window))
        state = read_safety_state(ledger)
    return cluster, history, state


def _repairs(config: Config, now: dt.datetime) -> list:
    """The repeat-offender window's repair attempts, when the ledger is at hand."""
    from remediator.store.ledger import SQLiteLedger

    if not os.path.exists(config.ledger_path):
        return []
    return SQLiteLedger(config.ledger_path).repairs(now - dt.timedelta(seconds=config.repair.window))


def _explain_one(config: Config, incident, world) -> dict:
    """The first decision and, for a rule with an escalation ladder, each step's rail-by-rail trace
    as if verification did not hold after the steps before it."""
    from remediator.domain.decide import decide, plan_escalation, plan_on_failure

    d = decide(incident, config.rules, world.history, world.cluster, config.safety, world.state, world.now,
               repairs=world.repairs, repair=world.repair)
    out = {"alert": incident.labels, "outcome": d.outcome, "rule": d.rule, "reason": d.reason, "detail": d.detail,
           "actions": [vars(p) for p in d.actions], "trace": list(d.trace), "escalation": [], "on_failure": []}
    rule = next((r for r in config.rules if r.name == d.rule), None)
    if rule is None or d.outcome not in ("act", "dry_run"):
        return out
    if rule.verify is not None:
        for i in range(min(len(rule.escalate.steps), rule.escalate.max_steps)):
            e = plan_escalation(incident, rule, i, world)
            out["escalation"].append({"step": i + 1, "outcome": e.outcome, "reason": e.reason,
                                      "detail": e.detail, "trace": list(e.trace)})
    for i in range(len(rule.on_failure)):  # as if a step of the ladder failed
        f = plan_on_failure(incident, rule, i, world)
        out["on_failure"].append({"step": i + 1, "outcome": f.outcome, "reason": f.reason, "detail": f.detail,
                                  "trace": list(f.trace)})
    return out


def _print_explained(r: dict) -> None:
    print(f"== {r['alert'].get('alertname', '?')} {json.dumps(r['alert'], sort_keys=True)}")
    for line in r["trace"]:
        print(f"   {line}")
    print(f"   => {r['outcome']}" + (f" ({r['reason']}: {r['detail']})" if r["reason"] else ""))
    for e in r["escalation"]:
        for line in e["trace"]:
            print(f"     {line}")
        print(f"     => escalation step {e['step']}: {e['outcome']}" +
              (f" ({e['reason']}: {e['detail']})" if e["reason"] else ""))
    for f in r.get("on_failure", []):
        for line in f["trace"]:
            print(f"     {line}")
        print(f"     => on_failure step {f['step']}: {f['outcome']}" +
              (f" ({f['reason']}: {f['detail']})" if f["reason"] else ""))


def explain(args: argparse.Namespace) -> int:
    from remediator.domain.models import Incident
    from remediator.domain.payload import PayloadError, parse
    from remediator.domain.rails import World

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
    cluster, history, state = _cluster_and_history(config, now)
    world = World(cluster, history, config.safety, state, now, config.safety.dry_run,
                  repairs=_repairs(config, now), repair=config.repair)
    results = [_explain_one(config, Incident(a.fingerprint, a.starts_at, a.labels, a.annotations, a.status), world)
               for a in note.alerts]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for r in results:
            _print_explained(r)
    return 0


def check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _die(str(exc))
    print(f"{args.config}: ok ({len(config.rules)} rules, dry_run={config.safety.dry_run}, "
          f"auth={'configured' if config.auth.configured else 'NOT configured'})")
    return 0


def example_config(args: argparse.Namespace) -> int:
    from remediator import examples_data

    return examples_data.run(args.name, list_only=args.list, write=args.write, force=args.force)


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
    x = sub.add_parser("example-config", help="print or write the shipped examples, rules, dashboards, runbooks")
    x.add_argument("name", nargs="?", help="a shipped file (default vigil.yaml; --list names them)")
    x.add_argument("--list", action="store_true", help="list the shipped files")
    x.add_argument("--write", type=Path, metavar="DIR", help="write every shipped file under DIR")
    x.add_argument("--force", action="store_true", help="with --write: overwrite existing files")
    x.set_defaults(func=example_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
