"""`remediator`: serve the webhook, explain a payload's decision, or check a config.

    remediator serve --config vigil.yaml [--listen 127.0.0.1:9095] [--insecure-no-auth]
    remediator explain --config vigil.yaml payload.json
    remediator check-config vigil.yaml [--check-secrets]
    remediator example-config [NAME | --list | --write DIR]
    remediator incidents|show ID|queue|pause --reason R [--for 2h]|resume|breaker-reset|state   (on call)
    remediator approve|deny ID --reason R [--step S]   (on call: a step waiting for approval)

The on-call subcommands talk to a running remediator: --url (env VIGIL_URL) and a bearer token
from --token-file (env VIGIL_TOKEN_FILE) or VIGIL_TOKEN.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from remediator.config import Config, ConfigError, load_config
from vigil_common import logs
from vigil_common.hostport import hostport_arg
from vigil_common.logs import HelpFormatter as _Help

log = logging.getLogger("remediator")
ENGINE_STOP_TIMEOUT = 8.0  # seconds for running actions to reach a safe point; Kubernetes kills at 30


def _die(message: str) -> int:
    print(f"remediator: {message}", file=sys.stderr)
    return 2


def _config_errors(path: str, first: ConfigError) -> int:
    """Every error of a config that does not load (secrets included), not just the first."""
    from remediator.config_check import check

    errors = check(path, check_secrets=True).errors or (first,)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return _die(f"{path}: {len(errors)} error{'s' if len(errors) > 1 else ''}; see `remediator check-config`")


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


def _started(config: Config, engine) -> None:
    engine.metrics.watch_queue(engine.queue)
    try:
        _log_start_state(config, engine)
    except Exception as exc:  # the ledger not answering yet: reported, never fatal (the lease is held by now)
        log.warning("could not read the pause and breaker state at start (%s: %s); the engine reads it again "
                    "before acting", type(exc).__name__, exc)
    gc.freeze()  # start-up's objects live as long as the process: full collections need not scan them


def _log_start_state(config: Config, engine) -> None:
    """What an operator must know at start: a pause in force (why, by whom, until when), an open
    breaker, and a single credential shared by Alertmanager and people."""
    from remediator.runtime.engine import utcnow

    state = engine.safety_state(utcnow())
    pause = engine.pause()
    engine.metrics.paused.set(1 if state.paused else 0)
    engine.metrics.breaker_open.set(1 if state.breaker_open else 0)
    (log.warning if state.paused else log.info)("%s", pause.describe() if state.paused else
                                                "remediation is active (not paused)")
    if state.breaker_open:
        log.warning("the circuit breaker is OPEN: no actions until POST /api/breaker/reset (remediator breaker-reset)")
    for role in ("intake", "read", "admin"):
        if config.auth.configured and not config.auth.with_role(role):
            log.warning("auth: no credential has the %r role (auth.credentials)", role)
    if config.safety.dry_run:
        log.warning("DRY-RUN: Vigil decides and records, and changes nothing (safety.dry_run: true); "
                    "set safety.dry_run: false to arm it")
    else:
        log.warning("ARMED: Vigil acts on the cluster (safety.dry_run: false); `remediator pause` stops it")
    if config.auth.legacy:
        log.warning("auth: one credential serves Alertmanager and people (intake and admin); list "
                    "auth.credentials with roles intake, read and admin to tell them apart in the audit trail")


def cache_needs(config: Config):
    """What the cache must watch besides nodes, for every step a rule can take (first actions,
    escalation and on_failure steps): namespaces and pods for steps in a namespace or that empty a
    node (the paused rail), Services and workloads for pod actions and scaling (availability)."""
    from remediator.cluster.cache import Needs
    from remediator.domain.actions import ACTIONS

    steps = [a for r in config.rules for a in (*r.actions, *r.escalate.steps, *r.on_failure)]
    kinds = [ACTIONS[a.type] for a in steps]
    # a templated taint effect may render NoExecute: only a fixed one other than that empties nothing
    empties = any(ACTIONS[a.type].empties({"effect": "NoExecute" if not isinstance(e := a.params.get("effect", ""),
                                                                                  str) else e}) for a in steps)
    return Needs(namespaces=any("namespace" in k.params for k in kinds) or empties,
                 pods=any(k.targets_pod for k in kinds) or empties,
                 services=any(k.targets_pod or k.name == "scale_deployment" for k in kinds))


def _cache(config: Config, kube, metrics):
    """The watch-fed cluster cache decisions read: nodes always; namespaces, pods, Services and
    workloads only when a rule's steps need them (cache_needs)."""
    if kube is None:
        return None
    from remediator.cluster.cache import ClusterCache

    cache = ClusterCache(kube, cache_needs(config))
    metrics.watch_cache(cache.staleness, lambda: {i.res.name: len(i.items) for i in cache.informers})
    metrics.count_kube_requests(lambda: kube.requests)
    cache.start()
    return cache


def serve(args: argparse.Namespace) -> int:
    from remediator import ha
    from remediator.runtime.metrics import Metrics
    from remediator.web.app import create_app
    from remediator.web.server import close as close_server
    from remediator.web.server import make_server

    logs.setup(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _config_errors(args.config, exc)
    if not config.auth.configured and not args.insecure_no_auth:
        return _die(f"{args.config}: no webhook credentials configured (auth.bearer_token_file/_env or "
                    "auth.basic_auth); refusing to start. Use --insecure-no-auth only for local experiments.")
    kube = _kube(config)
    if kube is None and not config.safety.dry_run:
        return _die(f"{args.config}: no Kubernetes configuration (kubernetes.kubeconfig, or run in a cluster); "
                    "only safety.dry_run may run without one")
    try:
        ledger = ha.open_ledger(config, kube)
    except Exception as exc:
        return _die(f"cannot open the ledger ({config.ledger.backend}): {exc}")
    metrics = Metrics(ledger.counts_by_status)
    cache = _cache(config, kube, metrics)
    engine, leader = ha.engine_with_leader(config, ledger, kube, metrics, cache)
    draining = threading.Event()
    app = create_app(config, ledger, engine, metrics, insecure_no_auth=args.insecure_no_auth, draining=draining)
    host, port = args.listen or config.listen
    try:
        server = make_server(app, host=host, port=port, max_body_bytes=config.max_body_bytes,
                             threads=config.server_threads)
    except OSError as exc:
        return _die(f"cannot listen on {host}:{port}: {exc.strerror}")
    if cache is not None and not cache.wait_synced(5.0):
        log.warning("the cluster cache is not synced yet; decisions defer until it is")
    ha.start(leader, engine)
    log.info("remediator listening on http://%s:%s (dry_run=%s, auth=%s, %s, identity=%s)", host,
             server.effective_port, config.safety.dry_run, "off" if args.insecure_no_auth else "on",
             ha.describe(config), leader.identity)
    if args.insecure_no_auth:
        log.warning("webhook authentication is OFF (--insecure-no-auth)")
    # on its own thread: a ledger still retrying must not keep the server from answering /readyz (503)
    threading.Thread(target=_started, args=(config, engine), name="vigil-started", daemon=True).start()

    def shutdown() -> None:
        """Readiness is off; intake keeps answering (what arrives is recorded and decided after the
        restart) while running actions stop at their next safe point; then the listener closes."""
        started = time.monotonic()
        engine.stop(timeout=ENGINE_STOP_TIMEOUT)
        ha.release(leader)  # the actions are at a safe point: hand the lease over
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
    ha.release(leader)
    return 0


def _cluster_and_history(config: Config, now: dt.datetime):
    from remediator import ha
    from remediator.domain.models import ClusterView, SafetyState
    from remediator.runtime.engine import read_safety_state

    cluster, history, state, kube = ClusterView(available=False), [], SafetyState(), None
    try:
        kube = _kube(config)
        if kube is not None:
            from remediator.cluster.view import read_cluster_view

            cluster = read_cluster_view(kube)
    except Exception as exc:  # no cluster at hand is normal for explain
        print(f"# cluster view unavailable ({type(exc).__name__}); budget and node checks skipped")
    try:  # the history and safety state the engine would see, from whichever backend holds them
        ledger = ha.ledger_to_read(config, kube)
        if ledger is not None:
            history = ledger.history(now - dt.timedelta(seconds=config.history_window))
            state = read_safety_state(ledger)
    except Exception as exc:
        print(f"# ledger unavailable ({type(exc).__name__}); history, budget in flight and breaker not used")
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
    from remediator.domain.topology import correlate, is_domain_incident

    # a domain incident is decided with policy.domain_rules, over its domain's members as the nodes' labels say
    rules = config.domain_rules if is_domain_incident(incident) else config.rules
    topology = correlate([incident], world.cluster, config.topology) if config.topology.domains else None
    d = decide(incident, rules, world.history, world.cluster, config.safety, world.state, world.now,
               repairs=world.repairs, repair=world.repair, topology=topology)
    out = {"alert": incident.labels, "outcome": d.outcome, "rule": d.rule, "reason": d.reason, "detail": d.detail,
           "actions": [vars(p) for p in d.actions], "trace": list(d.trace), "escalation": [], "on_failure": []}
    rule = next((r for r in rules if r.name == d.rule), None)
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
    if r["outcome"] == "wait":
        print(f"   => would wait for {r['reason']}: {r['detail']} (it keeps its place in the queue; decided "
              "again when that changes)")
    else:
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
    from remediator.config_check import check
    from remediator.domain.models import Incident
    from remediator.domain.payload import PayloadError, parse
    from remediator.domain.rails import World

    checked = check(args.config)  # explain needs no secrets: they are not read
    if checked.config is None:
        for err in checked.errors:
            print(f"error: {err}", file=sys.stderr)
        return _die(f"{args.config}: {len(checked.errors)} error(s)")
    config = checked.config
    try:
        body = Path(args.payload).read_bytes() if args.payload != "-" else sys.stdin.buffer.read()
        note = parse(body)
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
    from remediator.config_check import check

    result = check(args.config, check_secrets=args.check_secrets)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if not result.ok:
        for err in result.errors:
            print(f"error: {err}", file=sys.stderr)
        n = len(result.errors)
        return _die(f"{args.config}: {n} error{'s' if n > 1 else ''}")
    config = result.config
    from remediator import ha

    domains = (f", topology {'/'.join(d.kind for d in config.topology.domains)} with {len(config.domain_rules)} "
               "domain rules" if config.topology.domains else "")
    print(f"{args.config}: ok ({len(config.rules)} rules{domains}, dry_run={config.safety.dry_run}, "
          f"auth={'configured' if config.auth.configured else 'NOT configured'}, {ha.describe(config)}"
          f"{', secrets checked' if args.check_secrets else ', secrets not checked'})")
    return 0


def example_config(args: argparse.Namespace) -> int:
    from remediator import examples_data

    return examples_data.run(args.name, list_only=args.list, write=args.write, force=args.force)


def parser() -> argparse.ArgumentParser:
    from remediator import __version__, oncall

    p = argparse.ArgumentParser(prog="remediator", description=__doc__, formatter_class=_Help)
    logs.add_arguments(p, __version__, logging_flags=False)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the webhook receiver and the engine", formatter_class=_Help)
    s.add_argument("--config", required=True)
    s.add_argument("--listen", type=hostport_arg, default=None, help="HOST:PORT (default from config, 127.0.0.1:9095)")
    s.add_argument("--insecure-no-auth", action="store_true", help="accept unauthenticated webhooks (local only)")
    s.add_argument("--log-level", default="INFO", choices=logs.LEVELS)
    s.add_argument("--log-format", default="json", choices=("json", "text"), help="log lines as JSON or text")
    s.set_defaults(func=serve)
    e = sub.add_parser("explain", help="print the decision trace for a payload without acting", formatter_class=_Help)
    e.add_argument("--config", required=True)
    e.add_argument("--json", action="store_true")
    e.add_argument("payload", help="an Alertmanager v4 webhook body (file, or - for stdin)")
    e.set_defaults(func=explain)
    c = sub.add_parser("check-config", help="validate a config: every error, with file, line and YAML path",
                       formatter_class=_Help)
    c.add_argument("config")
    c.add_argument("--check-secrets", action="store_true",
                   help="also read every token and password file and environment variable the config names")
    c.set_defaults(func=check_config)
    x = sub.add_parser("example-config", help="print or write the shipped examples, rules, dashboards, runbooks",
                       formatter_class=_Help)
    x.add_argument("name", nargs="?", help="a shipped file (default vigil.yaml; --list names them)")
    x.add_argument("--list", action="store_true", help="list the shipped files")
    x.add_argument("--write", type=Path, metavar="DIR", help="write every shipped file under DIR")
    x.add_argument("--force", action="store_true", help="with --write: overwrite existing files")
    x.set_defaults(func=example_config)
    oncall.add_parsers(sub, _Help)
    return logs.document_defaults(p)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `remediator show 7 | head`: the reader left; no traceback, nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
