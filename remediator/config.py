"""vigil.yaml: typed, validated once at start. Every error names the file, the rule and the key;
unknown keys are errors too (a typo in a safety setting must not pass silently)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from remediator.config_gates import GATE_KEYS, check_gates, gate_of, parse_windows
from remediator.config_repair import parse_repair
from remediator.config_topology import parse_domain_budget, parse_topology
from remediator.credentials import Auth, parse_auth
from remediator.domain.actions import ACTIONS
from remediator.domain.budget import Limits, Pools
from remediator.domain.policy import (
    Action,
    Check,
    Escalation,
    Matcher,
    PolicyError,
    Rule,
    compile_query,
    compile_template,
)
from remediator.domain.repair import RepairSettings
from remediator.domain.safety import Breaker, Budget, Safety
from remediator.domain.scope import Namespaces, Scope
from remediator.domain.topology import Topology
from remediator.ha_config import LeaderElection, LedgerSettings, parse_leader_election, parse_ledger
from remediator.oncall_config import UI, Notifications, parse_notifications, parse_ui
from remediator.queue_config import AlertSource, QueueSettings, parse_alert_source, parse_queue
from vigil_common.config import ConfigError, Section, guarded, load_yaml, report
from vigil_common.hostport import parse_hostport

SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"  # the pod's own namespace
SERVER_THREADS = 16  # waitress threads: a webhook mostly waits for its group commit, so more of them share one


@dataclass(frozen=True)
class Config:
    path: str = "<defaults>"
    listen: tuple[str, int] = ("127.0.0.1", 9095)
    max_body_bytes: int = 10 * 1024 * 1024
    shutdown_delay: float = 2.0  # seconds intake keeps answering after SIGTERM, with readiness off
    server_threads: int = SERVER_THREADS
    auth: Auth = field(default_factory=Auth)
    ledger_path: str = "vigil-ledger.db"
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    leader_election: LeaderElection = field(default_factory=LeaderElection)
    kubeconfig: str | None = None  # None: in-cluster config
    event_namespace: str = "default"
    node_selector: str = ""  # label selector of the nodes Vigil manages and budgets over; "" = all
    kube_request_timeout: float = 10.0  # seconds, each Kubernetes API request
    action_deadline: float = 60.0  # seconds an action may retry transient API errors (429, 5xx, resets)
    action_deadlines: dict[str, float] = field(default_factory=dict)  # per action type, overriding the default
    workers: int = 4
    prometheus_url: str | None = None  # for guard and verify (prometheus-api-client)
    prometheus_timeout: float = 5.0
    safety: Safety = field(default_factory=Safety)
    rules: tuple[Rule, ...] = ()
    repair: RepairSettings = field(default_factory=RepairSettings)
    notifications: Notifications = field(default_factory=Notifications)
    ui: UI = field(default_factory=UI)
    queue: QueueSettings = field(default_factory=QueueSettings)
    alertmanager: AlertSource = field(default_factory=AlertSource)
    topology: Topology = field(default_factory=Topology)
    domain_rules: tuple[Rule, ...] = ()  # policy.domain_rules: for domain incidents (GpuDomainDegraded)

    @property
    def history_window(self) -> float:
        """How far back decisions look: the breaker's window and every rule's window and cooldown."""
        return max([self.safety.breaker.window, *(max(r.window, r.cooldown) for r in (*self.rules,
                                                                                      *self.domain_rules))])


def _action(a: Any, aw: str) -> Action:
    if not isinstance(a, dict) or not isinstance(a.get("type"), str):
        raise ConfigError(f"{aw}: each action needs a 'type'")
    spec = ACTIONS.get(a["type"])
    if spec is None:
        raise ConfigError(f"{aw}: unknown action type {a['type']!r} (known: {', '.join(sorted(ACTIONS))})",
                          at=(a, "type"))
    unknown = sorted(set(a) - {"type", "params", *GATE_KEYS})
    if unknown:
        raise ConfigError(f"{aw}: unknown key {unknown[0]!r}", at=(a, unknown[0]))
    params = a.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{aw}.params: must be a mapping", at=(a, "params"))
    missing = [p for p in spec.required if p not in params]
    if missing:
        raise ConfigError(f"{aw}.params: {a['type']} needs {missing[0]!r}", at=(a, "params"))
    extra = sorted(set(params) - set(spec.required) - set(spec.optional))
    if extra:
        raise ConfigError(f"{aw}.params: {a['type']} has no parameter {extra[0]!r}", at=(params, extra[0]))
    try:
        compiled = {k: compile_template(v, f"{aw}.params.{k}") for k, v in params.items()}
    except PolicyError as exc:
        raise ConfigError(str(exc), at=(a, "params")) from exc
    amount = params.get(spec.amount_param) if spec.amount_param else None
    if amount is not None and not (isinstance(amount, str) and ("{{" in amount or "{%" in amount)):
        try:  # a fixed amount is checked now; a templated one when it is rendered (blocked if bad)
            spec.amount_of(params)
        except ValueError as exc:
            raise ConfigError(f"{aw}.params: {exc}", at=(params, spec.amount_param)) from exc
    approval, window = gate_of(a, aw)
    return Action(a["type"], compiled, approval=approval, window=window)


def _actions(raw: Any, where: str, *, required: bool) -> list[Action]:
    if raw is None and not required:
        return []
    if not isinstance(raw, list) or (required and not raw):
        raise ConfigError(f"{where}': a non-empty list of actions")
    found = [guarded(lambda a=a, j=j: _action(a, f"{where}[{j}]'"), at=(raw, j)) for j, a in enumerate(raw)]
    return [a for a in found if a is not None]


def _deadlines(raw: Any, where: str) -> dict[str, float]:
    """{action type: duration}: how long each type of action may retry transient API errors."""
    sec = Section(raw, where, tuple(ACTIONS))
    return {t: sec.duration(t, 0.0) for t in ACTIONS if sec.get(t) is not None}


def _check(raw: Any, where: str) -> Check | None:
    if raw is None:
        return None
    sec = Section(raw, where, ("query", "mode", "deadline", "interval", "alert_resolved", "on_unknown"))
    query = sec.string("query", None)
    if query is None and not sec.boolean("alert_resolved", False):
        raise ConfigError(f"{where}: needs 'query' (PromQL) or 'alert_resolved: true'")
    mode = sec.string("mode", "fail_closed")
    if mode not in ("fail_closed", "fail_open"):
        raise ConfigError(f"{sec.key('mode')}: fail_closed or fail_open, got {mode!r}")
    on_unknown = sec.string("on_unknown", "stop")
    if on_unknown not in ("stop", "escalate"):
        sec.fail("on_unknown", f"stop or escalate, got {on_unknown!r}")
        on_unknown = "stop"
    try:
        compiled = compile_query(query, f"{where}.query") if query else None
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc
    return Check(query=compiled, mode=mode, deadline=sec.duration("deadline", 60.0),
                 interval=sec.duration("interval", 5.0, positive=True),
                 alert_resolved=sec.boolean("alert_resolved", False), on_unknown=on_unknown)


def _matchers(text: Any, where: str) -> list[Matcher]:
    try:
        return Matcher.parse_all(text)
    except PolicyError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _rule(raw: Any, i: int, where: str) -> Rule:
    name = raw.get("name") if isinstance(raw, dict) else None
    rw = f"{where}: rule {name!r}" if isinstance(name, str) and name else f"{where}: rule #{i + 1}"
    sec = Section(raw, rw, ("name", "match", "actions", "cooldown", "max_actions", "window", "min_firing",
                             "allow_stale", "guard", "verify", "escalate", "on_resolved", "description",
                             "on_failure", "min_available", "scope", "maintenance_window"))
    if not isinstance(name, str) or not name:
        sec.fail("name", "required")
        name = f"#{i + 1}"
    match = sec.get("match")
    if not isinstance(match, list) or not match:
        sec.fail("match", "a non-empty list of matchers such as 'alertname=\"X\"'")
        match = []
    matchers = tuple(x for i, m in enumerate(match)
                     for x in guarded(lambda m=m: _matchers(m, sec.key("match")), at=(match, i)) or ())
    actions = guarded(lambda: _actions(sec.get("actions"), f"{rw}: key 'actions", required=True),
                      at=(sec.raw, "actions")) or []
    esc = Section(sec.get("escalate"), f"{rw}: key 'escalate'", ("steps", "max_steps", "max_loops_per_target",
                                                                    "window"))
    steps = guarded(lambda: _actions(esc.get("steps"), f"{rw}: key 'escalate.steps", required=False),
                    at=(esc.raw, "steps")) or []
    on_resolved = Section(sec.get("on_resolved"), f"{rw}: key 'on_resolved'", ("uncordon", "verify", "validate"))
    uncordon = on_resolved.boolean("uncordon", False)
    if uncordon and not any(ACTIONS[a.type].removes_node for a in [*actions, *steps]):
        on_resolved.fail("uncordon", "only for rules that take a node out")
    on_failure = Section(sec.get("on_failure"), f"{rw}: key 'on_failure'", ("steps",))
    return Rule(
        name=name, matchers=matchers, actions=tuple(actions), cooldown=sec.duration("cooldown", 0.0),
        max_actions=sec.number("max_actions", 0, integer=True), window=sec.duration("window", 3600.0),
        min_firing=sec.duration("min_firing", 0.0), allow_stale=sec.boolean("allow_stale", False),
        guard=_check(sec.get("guard"), f"{rw}: key 'guard'"), verify=_check(sec.get("verify"), f"{rw}: key 'verify'"),
        escalate=Escalation(steps=tuple(steps), max_steps=esc.number("max_steps", 3, integer=True),
                            max_loops_per_target=esc.number("max_loops_per_target", 1, integer=True),
                            window=esc.duration("window", 86400.0)),
        uncordon_on_resolved=(_check(on_resolved.get("verify"), f"{rw}: key 'on_resolved.verify'") or Check())
        if uncordon else None,
        validate_on_resolved=on_resolved.boolean("validate", False),
        on_failure=tuple(guarded(lambda: _actions(on_failure.get("steps"), f"{rw}: key 'on_failure.steps",
                                                  required=False), at=(on_failure.raw, "steps")) or ()),
        min_available=_min_available(sec), maintenance_window=sec.string("maintenance_window", None),
        namespaces=_rule_scope(sec.get("scope"), f"{rw}: key 'scope'"),
    )


def _namespaces(raw: Any, where: str) -> Namespaces:
    """{include: [...], exclude: [...]}: lists of namespace names."""
    sec = Section(raw, where, ("include", "exclude"))
    lists = {}
    for key in ("include", "exclude"):
        value = sec.get(key) or []
        if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
            sec.fail(key, "a list of namespace names")
            value = []
        lists[key] = tuple(value)
    return Namespaces(lists["include"], lists["exclude"])


def _rule_scope(raw: Any, where: str) -> Namespaces | None:
    """A rule's `scope: {namespaces: {include, exclude}}`: narrows kubernetes.namespaces."""
    if raw is None:
        return None
    sec = Section(raw, where, ("namespaces",))
    return _namespaces(sec.get("namespaces"), f"{where}.namespaces")


def _own_namespaces(ledger: LedgerSettings, election: LeaderElection) -> tuple[str, ...]:
    """Vigil's own namespaces (excluded by default): the pod's, the ledger's and the lease's."""
    own = [ledger.namespace] if ledger.backend == "kubernetes" else []
    if election.namespace:
        own.append(election.namespace)
    try:
        with open(SA_NAMESPACE) as f:
            own.append(f.read().strip())
    except OSError:
        pass  # not in a cluster
    return tuple(dict.fromkeys(n for n in own if n))


def _narrower(rules: tuple[Rule, ...], scope: Scope, raw_rules: list, where: str) -> None:
    """A rule may narrow scope, never widen it: its include may name only namespaces in scope."""
    for r in rules:
        for ns in (r.namespaces.include if r.namespaces else ()):
            why = scope.refuses(ns)
            if why:
                at = next((i for i, raw in enumerate(raw_rules) if isinstance(raw, dict) and raw.get("name") == r.name),
                          None)
                report(ConfigError(f"{where}: rule {r.name!r}: key 'scope.namespaces.include': {why}; a rule can "
                                   "narrow kubernetes.namespaces, never widen it",
                                   at=(raw_rules, at) if at is not None else None))


def _min_available(sec: Section) -> int | str | None:
    """A rule's min_available: a number of replicas/endpoints (>= 0) or a percentage "n%"."""
    raw = sec.get("min_available")
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        value = float(text[:-1]) if text.endswith("%") else int(text)
    except ValueError:
        value = -1
    if isinstance(raw, bool) or not math.isfinite(value) or value < 0 or (text.endswith("%") and value > 100):
        sec.fail("min_available", f"a number of replicas or a percentage such as '50%', got {raw!r}")
        return None
    return text if text.endswith("%") else int(text)


def _limits(raw: Any, where: str) -> Limits:
    sec = Section(raw, where, ("max_nodes", "max_percent", "min_nodes"))
    pct = sec.number("max_percent", None)
    if pct is not None and pct > 100:
        sec.fail("max_percent", "a percentage, at most 100")
    return Limits(sec.number("max_nodes", None, integer=True), pct, sec.number("min_nodes", 1, integer=True))


def _pools(raw: Any, where: str) -> Pools | None:
    """safety.budget.pools: {label: <node label>, default: {limits}, overrides: {<value>: {limits}}}."""
    if raw is None:
        return None
    sec = Section(raw, where, ("label", "default", "overrides"))
    label = sec.string("label", None)
    if not label:
        sec.fail("label", "required (the node label whose value names the pool)")
        return None
    overrides = sec.get("overrides") or {}
    if not isinstance(overrides, dict):
        sec.fail("overrides", "a mapping of label value to limits")
        overrides = {}
    return Pools(label, _limits(sec.get("default"), f"{where}.default"),
                 {str(k): _limits(v, f"{where}.overrides.{k}") for k, v in overrides.items()})


def parse_config(data: Any, path: str = "<config>") -> Config:
    top = Section(data, path, ("server", "auth", "ledger", "kubernetes", "engine", "safety", "policy", "prometheus",
                               "notifications", "ui", "leader_election", "repair", "alertmanager", "topology"))
    prom = Section(top.get("prometheus"), f"{path}: prometheus", ("url", "timeout"))
    server = Section(top.get("server"), f"{path}: server",
                     ("listen", "max_body_bytes", "shutdown_delay", "threads"))
    listen = server.string("listen", "127.0.0.1:9095")
    try:
        listen_at = parse_hostport(listen)
    except ValueError as exc:
        server.fail("listen", str(exc))
        listen_at = ("127.0.0.1", 9095)
    ledger_path, ledger = parse_ledger(top.get("ledger"), f"{path}: ledger")
    kube = Section(top.get("kubernetes"), f"{path}: kubernetes", ("kubeconfig", "event_namespace", "node_selector",
                                                                   "request_timeout", "action_deadline",
                                                                   "action_deadlines", "namespaces"))
    engine = Section(top.get("engine"), f"{path}: engine", ("workers", "reconcile_interval", "max_wait"))
    safety = Section(top.get("safety"), f"{path}: safety", ("dry_run", "max_alert_age", "budget", "breaker"))
    budget = Section(safety.get("budget"), f"{path}: safety.budget",
                      ("max_nodes", "max_percent", "max_gpu_percent", "min_nodes", "max_pod_restarts_per_workload",
                       "max_traffic_shift_percent", "window", "pools", "domains"))
    breaker = Section(safety.get("breaker"), f"{path}: safety.breaker", ("max_actions", "window", "reset_after"))
    for k in ("max_percent", "max_gpu_percent", "max_traffic_shift_percent"):
        v = budget.number(k, None)
        if v is not None and v > 100:
            budget.fail(k, "a percentage, at most 100")
    policy = Section(top.get("policy"), f"{path}: policy", ("rules", "domain_rules", "maintenance_windows",
                                                           "approval_ttl"))
    rules = _rules(policy, "rules", f"{path}: policy")
    topology = guarded(lambda: parse_topology(top.get("topology"), f"{path}: topology"),
                       at=(top.raw, "topology")) or Topology()
    domain_rules = _rules(policy, "domain_rules", f"{path}: policy.domain_rules")
    if topology.domains and not domain_rules:
        policy.fail("domain_rules", "topology.domains is set: at least one rule for GpuDomainDegraded incidents")
    plain_rules = policy.get("rules") if isinstance(policy.get("rules"), list) else []
    raw_rules = [r for k in ("rules", "domain_rules") if isinstance(policy.get(k), list) for r in policy.get(k)]
    windows = parse_windows(policy.get("maintenance_windows"), f"{path}: policy.maintenance_windows")
    check_gates(plain_rules, windows, f"{path}: policy")
    leader_election = parse_leader_election(top.get("leader_election"), f"{path}: leader_election",
                                            dry_run=safety.boolean("dry_run", False))
    scope = Scope(_namespaces(kube.get("namespaces"), kube.key("namespaces")),
                  _own_namespaces(ledger, leader_election))
    _narrower(rules, scope, plain_rules, f"{path}: policy")
    needs_prometheus = [r.name for r in (*rules, *domain_rules)
                        if (r.guard and r.guard.query) or (r.verify and r.verify.query)
                        or (r.uncordon_on_resolved and r.uncordon_on_resolved.query)]
    if needs_prometheus and not prom.string("url", None):
        prom.fail("url", f"rule {needs_prometheus[0]!r} has a PromQL guard or verify")
    names = [r.name for r in (*rules, *domain_rules)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    for dupe in dupes:
        report(ConfigError(f"{path}: policy: rule {dupe!r}: key 'name': used twice",
                           at=(raw_rules, [i for i, r in enumerate(raw_rules)
                                           if isinstance(r, dict) and r.get("name") == dupe][-1])))
    return Config(
        path=path, listen=listen_at,
        max_body_bytes=server.number("max_body_bytes", 10 * 1024 * 1024, integer=True, minimum=1024),
        shutdown_delay=server.duration("shutdown_delay", 2.0),
        server_threads=server.number("threads", SERVER_THREADS, integer=True, minimum=1, maximum=256),
        auth=parse_auth(top.get("auth"), f"{path}: auth"),
        notifications=parse_notifications(top.get("notifications"), f"{path}: notifications"),
        ui=parse_ui(top.get("ui"), f"{path}: ui"),
        ledger_path=ledger_path, ledger=ledger,
        leader_election=leader_election,
        kubeconfig=kube.string("kubeconfig", None), event_namespace=_event_namespace(kube),
        node_selector=kube.string("node_selector", ""),
        kube_request_timeout=kube.duration("request_timeout", 10.0, positive=True),
        action_deadline=kube.duration("action_deadline", 60.0),
        action_deadlines=_deadlines(kube.get("action_deadlines"), kube.key("action_deadlines")),
        workers=engine.number("workers", 4, integer=True, minimum=1), queue=parse_queue(engine),
        alertmanager=parse_alert_source(top.get("alertmanager"), f"{path}: alertmanager"),
        prometheus_url=prom.string("url", None), prometheus_timeout=prom.duration("timeout", 5.0, positive=True),
        safety=Safety(
            dry_run=safety.boolean("dry_run", False), max_alert_age=safety.duration("max_alert_age", 3600.0),
            budget=Budget(max_nodes=budget.number("max_nodes", None, integer=True),
                          max_percent=budget.number("max_percent", None),
                          max_gpu_percent=budget.number("max_gpu_percent", None),
                          min_nodes=budget.number("min_nodes", 1, integer=True),
                          max_pod_restarts_per_workload=budget.number("max_pod_restarts_per_workload", 0, integer=True),
                          max_traffic_shift_percent=budget.number("max_traffic_shift_percent", None),
                          window=budget.duration("window", 3600.0),
                          pools=_pools(budget.get("pools"), f"{path}: safety.budget.pools"),
                          domains=guarded(lambda: parse_domain_budget(budget.get("domains"),
                                                                      f"{path}: safety.budget.domains", topology),
                                          at=(budget.raw, "domains")) or {}),
            breaker=Breaker(max_actions=breaker.number("max_actions", 10, integer=True, minimum=1),
                            window=breaker.duration("window", 300.0),
                            reset_after=breaker.duration("reset_after", 0.0)),
            windows=windows, approval_ttl=policy.duration("approval_ttl", 3600.0, positive=True),
            scope=scope,
        ),
        rules=rules, topology=topology, domain_rules=domain_rules,
        repair=guarded(lambda: parse_repair(top.get("repair"), path), at=(top.raw, "repair")) or RepairSettings(),
    )


def _rules(policy: Section, key: str, where: str) -> tuple[Rule, ...]:
    raw_rules = policy.get(key) or []
    if not isinstance(raw_rules, list):
        policy.fail(key, "must be a list")
        return ()
    parsed = [guarded(lambda r=r, i=i: _rule(r, i, where), at=(raw_rules, i)) for i, r in enumerate(raw_rules)]
    return tuple(r for r in parsed if r is not None)


def _event_namespace(kube: Section) -> str:
    """Events on nodes (cluster-scoped) are accepted by the API server only in `default` (any other
    namespace is a 422); namespaced objects get their Events in their own namespace."""
    value = kube.string("event_namespace", "default")
    if value != "default":
        raise kube.err("event_namespace", "the API server accepts Events on nodes only in namespace 'default' "
                       f"(not {value!r}); remove the key: Events on namespaced objects go to their own namespace")
    return value


def load_config(path: str | os.PathLike) -> Config:
    path = str(path)
    return parse_config(load_yaml(path), path)
