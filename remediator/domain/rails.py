"""The safety rails: small named checks that every state-changing step passes, in a fixed order.

paused -> stale -> min_firing -> target -> ownership -> topology -> one_repair -> denied ->
availability -> cooldown -> rate_limit -> repeat_offenders -> guard -> breaker -> budgets -> window ->
approval. Each rail reads the step (what would change, for which incident and rule, and why: a first
action, an escalation step, a restore or an uncordon on resolve) and the world (cluster view,
history, settings, safety state, people's approvals, the degraded domains, clock), and returns a
Verdict: passed with a trace line, or stopped with a reason. A stop by a rail that can clear (WAITS)
makes the step wait; a denial hands the incident to people; joining a domain incident ends a
member's own; any other stop refuses it. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from remediator.domain import budget as nodebudget
from remediator.domain import topology as topo
from remediator.domain.actions import ACTIONS
from remediator.domain.approvals import DENIED, Approvals, step_key
from remediator.domain.availability import pod_availability, scale_availability
from remediator.domain.models import (
    ATTEMPTED,
    IN_FLIGHT,
    LIVE_STATES,
    PAUSE_ANNOTATION,
    BudgetUse,
    CheckResult,
    ClusterView,
    Incident,
    PastAction,
    PlannedAction,
    SafetyState,
)
from remediator.domain.policy import Rule
from remediator.domain.repair import RepairRecord, RepairSettings, exhausted
from remediator.domain.safety import Safety

KINDS = ("first", "escalation", "restore", "uncordon", "on_failure")

# Rails whose stop is a condition that can clear: the step *waits* (the incident keeps its place in the
# queue and is decided again when the world changes), as Cluster API's maxUnhealthy, medik8s' minHealthy
# and Karpenter's budgets make work wait. Every other stop is a *refusal* (the policy says never: stale,
# outside scope, not Vigil's to undo, a repeat offender, a template error) and is final.
# (An unavailable cluster view defers: decided again in a few seconds.)
WAITS = frozenset({"paused", "budget", "breaker_open", "cooldown", "rate_limit", "availability", "guard",
                   "guard_unavailable", "node_busy", "joined", "node_settling", "window", "approval",
                   "domain_opening"})


def waits(reason: str) -> bool:
    """Whether a stop for `reason` holds the step back (it waits) rather than refusing it."""
    return reason in WAITS


@dataclass(frozen=True)
class Step:
    """What would change. kind: first | escalation | restore | uncordon | on_failure (a repair ladder
    going on after a step failed). owner: for a restore,
    who owns the change now ("vigil:<incident id>" or another writer), as the shell read it."""
    kind: str
    incident: Incident
    rule: Rule
    actions: tuple[PlannedAction, ...]
    owner: str | None = None


@dataclass(frozen=True)
class World:
    """What the rails read besides the step; `guard` is None where it was not evaluated."""
    cluster: ClusterView
    history: Sequence[PastAction]
    safety: Safety
    state: SafetyState
    now: dt.datetime
    dry_run: bool = False
    guard: CheckResult | None = None
    repairs: Sequence[RepairRecord] = ()  # repair attempts in the repeat-offender window (from the ledger)
    repair: RepairSettings | None = None  # None: repeat offenders not checked (no ledger at hand)
    # the engine acts on this plan: an unavailable cluster view defers it instead of skipping the cluster rails
    # (`explain` without a cluster leaves it False and shows what the other rails say)
    needs_cluster: bool = False
    approvals: Approvals = field(default_factory=dict)  # people's word on gated steps (from the ledger)
    topology: topo.Correlation | None = None  # the degraded domains (None: not correlated here)

    def live(self) -> list[PastAction]:
        counted = (*LIVE_STATES, "dry_run") if self.dry_run else LIVE_STATES
        return [a for a in self.history if a.state in counted]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    line: str
    reason: str = ""
    outcome: str = "blocked"  # when not passed: blocked | defer
    not_before: dt.datetime | None = None
    open_breaker: bool = False
    budget: BudgetUse | None = None
    step: str = ""  # the gated step a wait for approval or a window is for, "reboot_node(node-7)"
    joined: int | None = None  # topology: the domain incident a member's incident joins (its own ends there)


def ok(line: str, **kw) -> Verdict:
    return Verdict(True, line, **kw)


def block(reason: str, detail: str, **kw) -> Verdict:
    return Verdict(False, detail, reason=reason, **kw)


def _node_actions(step: Step) -> list[PlannedAction]:
    return [p for p in step.actions if ACTIONS[p.type].target_kind == "node"]


# ---- the rails, in order ------------------------------------------------------------------------

def paused(step: Step, world: World) -> Verdict:
    if world.state.paused:
        return block("paused", "remediation is paused globally")
    for p in step.actions:
        ns = p.params.get("namespace")
        if ns is not None and ns in world.cluster.paused_namespaces:
            return block("paused", f"namespace {ns} has {PAUSE_ANNOTATION}=disabled")
    for p in _node_actions(step):
        node = world.cluster.nodes.get(p.target)
        if node is not None and node.annotations.get(PAUSE_ANNOTATION) == "disabled":
            return block("paused", f"node {p.target} has {PAUSE_ANNOTATION}=disabled")
        if ACTIONS[p.type].empties(p.params):  # a drain, a reboot (it drains first), a replacement, NoExecute
            hit = sorted({k.split("/")[0] for k, pod in world.cluster.pods.items() if pod.node == p.target}
                         & world.cluster.paused_namespaces)
            if hit:
                return block("paused", f"draining {p.target} would evict pods of paused namespace {hit[0]}")
    return ok("not paused (global, namespaces, nodes)")


def stale(step: Step, world: World) -> Verdict:
    if step.kind != "first":
        return ok(f"not checked for {step.kind} steps")
    # the age when Vigil learnt of it: an incident that waited in the queue does not go stale by waiting
    age = (min(step.incident.received_at or world.now, world.now) - step.incident.starts_at).total_seconds()
    if age > world.safety.max_alert_age and not step.rule.allow_stale:
        return block("stale", f"the alert started {age:.0f} s ago, more than max_alert_age "
                     f"{world.safety.max_alert_age:.0f} s")
    return ok(f"alert age {max(age, 0):.0f} s")


def min_firing(step: Step, world: World) -> Verdict:
    if step.kind != "first":
        return ok(f"not checked for {step.kind} steps")
    age = (world.now - step.incident.starts_at).total_seconds()
    if age < step.rule.min_firing:
        not_before = step.incident.starts_at + dt.timedelta(seconds=step.rule.min_firing)
        return Verdict(False, f"firing for {max(age, 0):.1f} s, the rule needs {step.rule.min_firing:.0f} s",
                       reason="min_firing", outcome="defer", not_before=not_before)
    return ok(f"firing for {max(age, 0):.0f} s (needs {step.rule.min_firing:.0f} s)")


def target(step: Step, world: World) -> Verdict:
    cluster = world.cluster
    if not cluster.available and world.needs_cluster:
        return Verdict(False, "the cluster view is unavailable: target, ownership, availability, node pause and "
                       "budget cannot be checked; not acting blind", reason="cluster_unavailable", outcome="defer")
    if not cluster.available:
        return ok("cluster view unavailable; targets not checked")
    for p in step.actions:
        why = _outside_namespaces(p, step, world) or _target_object(p, cluster)
        if why:
            return why
    return ok("targets exist and are in scope")


def _outside_namespaces(p: PlannedAction, step: Step, world: World) -> Verdict | None:
    """Every action on a namespaced object: its namespace inside kubernetes.namespaces and the rule's."""
    ns = p.params.get("namespace")
    if ACTIONS[p.type].target_kind == "node" or ns is None:
        return None
    why = world.safety.scope.refuses(str(ns), step.rule.namespaces, step.rule.name)
    return block("outside_scope", f"{p.type}({p.target}): {why}") if why else None


def _target_object(p: PlannedAction, cluster: ClusterView) -> Verdict | None:
    kind = ACTIONS[p.type].target_kind
    if kind == "node":
        node = cluster.nodes.get(p.target)
        if node is None:
            return block("unknown_target", f"{p.type}: no node named {p.target!r}")
        if not node.managed:
            return block("outside_node_selector", f"{p.type}: node {p.target} is outside node_selector")
    elif kind == "pod":
        pod = cluster.pods.get(p.target)
        if pod is None:
            return block("unknown_target", f"{p.type}: no pod {p.target}")
        node = cluster.nodes.get(pod.node) if pod.node else None
        if pod.node and (node is None or not node.managed):
            return block("outside_scope", f"{p.type}({p.target}): the pod runs on node {pod.node}, outside "
                         "kubernetes.node_selector")
        if not pod.workload and str(p.params.get("allow_bare", "")).lower() not in ("true", "1", "yes"):
            return block("bare_pod", f"{p.target} has no controller; the rule does not allow restarting "
                         "bare pods")
    return None


def _still_needed(p: PlannedAction, step: Step, world: World) -> str:
    """Another firing incident took this node out (its cordon may be this incident's, found
    "already unschedulable"): undoing it would return a node that still has a fault to service."""
    removes = set(ACTIONS.of("removes_node"))
    others = sorted({a.incident_id for a in world.history if a.incident_firing and a.target == p.target and
                     a.type in removes and a.state in LIVE_STATES and a.incident_id != step.incident.id})
    if not others:
        return ""
    return (f"node {p.target} is still out of service for firing incident(s) {', '.join(map(str, others))}; "
            "it is undone once they resolve")


def ownership(step: Step, world: World) -> Verdict:
    if step.kind == "restore":
        mine = f"vigil:{step.incident.id}"
        if step.owner != mine:
            return block("not_owner", f"{step.actions[0].target} is now owned by {step.owner or 'nobody'}, not "
                         f"incident {step.incident.id}; Vigil never undoes what it does not own")
        return ok(f"incident {step.incident.id} still owns the change")
    for p in step.actions:
        if step.kind == "uncordon" and (why := _still_needed(p, step, world)):  # an explicit uncordon rule (a
            return block("still_needed", why, outcome="defer")  # "node healthy" alert) is the policy's call
        if not ACTIONS[p.type].undoes or not world.cluster.available:
            continue
        node = world.cluster.nodes.get(p.target)
        owner = node.cordon_owner if node else ""
        if not owner:
            continue  # schedulable already: nothing to undo
        wanted = f"vigil:{step.incident.id}" if step.kind == "uncordon" else "vigil:"
        if not (owner == wanted if step.kind == "uncordon" else owner.startswith(wanted)):
            return block("foreign_cordon", f"node {p.target} is cordoned by {owner}, not by "
                         f"{'this incident' if step.kind == 'uncordon' else 'Vigil'}; Vigil never undoes that")
    return ok("nothing to undo that Vigil does not own")


def _node_of(p: PlannedAction | PastAction) -> str:
    return p.target.split("/")[0] if ACTIONS[p.type].target_kind == "node" else ""


def topology(step: Step, world: World) -> Verdict:
    """One incident per degraded domain: a step of a member node's own ladder (its first step, or a
    step of a ladder already running: it stops there) joins the domain incident, or waits while the
    engine opens it. Restores and uncordons on resolve go on."""
    corr = world.topology
    if corr is None:
        return ok("topology not correlated here")
    if topo.is_domain_incident(step.incident):
        first = corr.open.get(topo.key_of(step.incident))
        if step.kind == "first" and first is not None and first.id is not None and first.id != step.incident.id:
            return block("domain", f"domain incident {first.id} already handles this domain", joined=first.id)
        d = corr.degraded.get(topo.key_of(step.incident))
        return ok(d.evidence() if d is not None else "the domain is no longer degraded")
    nodes = sorted({n for p in step.actions if (n := _node_of(p))})
    if step.kind not in ("first", "escalation", "on_failure"):
        return ok(f"not checked for {step.kind} steps")
    for node in nodes:
        d = corr.degraded_for(node)
        if d is None:
            continue
        if d.incident is None or d.incident.id is None:
            return block("domain_opening", f"node {node} is a member of degraded {d.kind} domain {d.domain}; "
                         f"its domain incident is being opened. {d.evidence()}")
        return block("domain", f"node {node} is a member of degraded {d.kind} domain {d.domain}: domain incident "
                     f"{d.incident.id} takes over. {d.evidence()}", joined=d.incident.id)
    out = [p.target for p in step.actions if ACTIONS[p.type].removes_node]
    spanning = topo.jobs_spanning(corr, world.cluster, out) if out and world.cluster.available else []
    return ok("; ".join(["no node of this step is a member of a degraded domain", *spanning]))


SETTLE = 120.0  # seconds after a repair of a node during which its other alerts may still resolve


def one_repair(step: Step, world: World) -> Verdict:
    """One repair per node, across rules and alert names (NVSentinel's equivalence groups): while
    another incident's ladder has steps planned or running on this node, a first step for the node
    joins it (it asks for no more: it waits for that ladder to end, and its alert usually resolves
    with the repair) or, asking for more, waits for it to end; it never starts a second ladder
    beside it. For SETTLE seconds after a repair of the node ended, a plan for an alert raised before
    that repair ended waits too: it may be the repaired fault's other alert, still resolving (an
    alert that started after the repair is a new fault and is not held)."""
    if step.kind != "first":
        return ok(f"not checked for {step.kind} steps")
    if topo.is_domain_incident(step.incident):
        return ok("a domain incident takes over its members' repairs")
    mine = {n for p in step.actions if (n := _node_of(p))}
    running: dict[int, list[PastAction]] = {}
    for a in world.history:
        if a.incident_id != step.incident.id and a.state in IN_FLIGHT and _node_of(a) in mine:
            running.setdefault(a.incident_id, []).append(a)
    if running:  # the ladder does as much as all its steps, those done included
        other = min(running)
        return _join_or_wait(step, other, [a for a in world.history if a.incident_id == other and _node_of(a)])
    ended = [a for a in world.history if a.incident_id != step.incident.id and a.state == "succeeded"
             and ACTIONS[a.type].repair and _node_of(a) in mine and a.done_at is not None
             and (world.now - a.done_at).total_seconds() < SETTLE
             and step.incident.starts_at < a.done_at]  # raised before that repair ended: maybe its fault
    if ended:
        last = max(ended, key=lambda a: a.done_at)
        return block("node_settling", f"node {_node_of(last)} was repaired by incident {last.incident_id} "
                     f"{(world.now - last.done_at).total_seconds():.0f} s ago; its other alerts get {SETTLE:.0f} s "
                     "to resolve before another repair", not_before=last.done_at + dt.timedelta(seconds=SETTLE))
    return ok("no other repair runs on this node")


def _join_or_wait(step: Step, other: int, theirs: list[PastAction]) -> Verdict:
    harsh = max((ACTIONS[a.type].harshness for a in theirs), default=0)  # the registry ranks them
    ours = max((ACTIONS[p.type].harshness for p in step.actions), default=0)
    node = _node_of(theirs[0])
    if ours <= harsh:
        return block("joined", f"incident {other}'s repair of node {node} already does as much "
                     f"({', '.join(sorted({a.type for a in theirs}))}): this fault joins it and is decided again "
                     "when it ends (it usually resolves with the repair)")
    return block("node_busy", f"incident {other}'s repair of node {node} is running; this harsher repair waits for "
                 "it to end")


def availability(step: Step, world: World) -> Verdict:
    if not world.cluster.available:
        return ok("cluster view unavailable; availability not checked")
    for p in step.actions:
        why = ""
        if ACTIONS[p.type].targets_pod:
            why = pod_availability(p, step.rule.min_available, world.cluster)
        elif p.type == "scale_deployment":
            why = scale_availability(p, step.rule.min_available, world.cluster)
        if why:
            return block("availability", why)
    return ok("replicas and endpoints stay above min_available")


def cooldown(step: Step, world: World) -> Verdict:
    rule = step.rule
    if step.kind == "escalation":
        since = world.now - dt.timedelta(seconds=rule.escalate.window)
        for p in step.actions:
            loops = {a.incident_id for a in world.history if a.rule == rule.name and a.type == p.type and
                     a.target == p.target and a.incident_id != step.incident.id and a.at >= since}
            if len(loops) >= rule.escalate.max_loops_per_target:
                return block("escalation_capped", f"{p.type}({p.target}) already escalated for {len(loops)} other "
                             f"incidents in {rule.escalate.window:.0f} s, max_loops_per_target "
                             f"{rule.escalate.max_loops_per_target}")
        return ok("escalation loop cap not reached")
    if step.kind != "first" or not rule.cooldown:
        return ok("no cooldown")
    since = world.now - dt.timedelta(seconds=rule.cooldown)
    live = world.live()
    for p in step.actions:  # its own earlier actions (a chain re-planned after a wait) do not hold it back
        recent = [a for a in live if a.rule == rule.name and a.target == p.target and a.at >= since
                  and a.incident_id != step.incident.id]
        if recent:
            return block("cooldown", f"{p.target}: rule acted at {max(a.at for a in recent).isoformat()}, "
                         f"cooldown {rule.cooldown:.0f} s")
    return ok(f"no action on these targets in the last {rule.cooldown:.0f} s")


def rate_limit(step: Step, world: World) -> Verdict:
    rule = step.rule
    if step.kind != "first" or not rule.max_actions:
        return ok("no rate limit")
    since = world.now - dt.timedelta(seconds=rule.window)
    acted = {a.incident_id for a in world.live() if a.rule == rule.name and a.at >= since
             and a.incident_id != step.incident.id}
    if len(acted) >= rule.max_actions:
        return block("rate_limit", f"{len(acted)} incidents acted on in {rule.window:.0f} s, max_actions "
                     f"{rule.max_actions}")
    return ok(f"{len(acted)} of {rule.max_actions} incidents in {rule.window:.0f} s")


def guard(step: Step, world: World) -> Verdict:
    check = step.rule.guard
    if check is None or step.kind not in ("first", "escalation"):
        return ok("no guard")
    result = world.guard
    if result is None:
        return ok("not evaluated here (no Prometheus); the engine evaluates it before acting")
    if result.holds is None:
        if check.mode != "fail_open":
            return block("guard_unavailable", f"the guard could not be evaluated ({result.detail}); failing closed")
        return ok(f"unknown ({result.detail}); the rule fails open")
    if not result.holds:
        return block("guard", f"the guard does not hold: {result.detail}")
    return ok(f"holds: {result.detail}")


def breaker(step: Step, world: World) -> Verdict:
    if world.state.breaker_open:
        return block("breaker_open", "the circuit breaker is open; reset it after checking the storm")
    br = world.safety.breaker
    since = world.now - dt.timedelta(seconds=br.window)
    attempted = (*ATTEMPTED, "dry_run") if world.dry_run else ATTEMPTED
    recent = sum(1 for a in world.history if a.state in attempted and a.at >= since)
    if recent + len(step.actions) > br.max_actions:
        return block("breaker_open", f"{recent} actions in the last {br.window:.0f} s plus {len(step.actions)} "
                     f"would exceed {br.max_actions}: opening the circuit breaker", open_breaker=True)
    return ok(f"{recent} + {len(step.actions)} actions in {br.window:.0f} s, max {br.max_actions}")


def _pod_budgets(step: Step, world: World) -> Verdict | None:
    b = world.safety.budget
    since = world.now - dt.timedelta(seconds=b.window)
    live = [a for a in world.live() if a.at >= since]
    for p in step.actions:
        kind = ACTIONS[p.type].budget
        if kind == "pod_disruptions" and p.workload and b.max_pod_restarts_per_workload:
            done = sum(1 for a in live if a.workload == p.workload)
            if done >= b.max_pod_restarts_per_workload:
                return block("budget", f"{p.workload}: {done} pods restarted in {b.window:.0f} s, "
                             f"max_pod_restarts_per_workload {b.max_pod_restarts_per_workload}")
        if kind == "traffic_shift" and b.max_traffic_shift_percent is not None:
            moved = sum(a.amount for a in live if a.type == p.type and a.target == p.target)
            if moved + p.amount > b.max_traffic_shift_percent:
                return block("budget", f"{p.target}: {moved:g}% of traffic moved in {b.window:.0f} s plus "
                             f"{p.amount:g}% exceeds max_traffic_shift_percent {b.max_traffic_shift_percent:g}")
    return None


VIEW_LAG = 10.0  # seconds a node taken out just now counts as out before the cluster view shows it


def _in_flight(world: World) -> set[str]:
    """Nodes Vigil's plans take out: planned or running, and what a still-firing incident took out
    in the last VIEW_LAG seconds (the view can lag a cordon that just succeeded; after that the view
    decides, so a node someone returned is not counted out, and taking it out again is not free)."""
    removes = set(ACTIONS.of("removes_node"))
    out = {a.target for a in world.history if a.state in IN_FLIGHT and a.type in removes}
    since = world.now - dt.timedelta(seconds=VIEW_LAG)
    undone: dict[str, dt.datetime] = {}  # node -> the latest undo (uncordon) that finished
    for a in world.history:
        if a.state == "succeeded" and ACTIONS[a.type].undoes and a.done_at is not None:
            undone[a.target] = max(undone.get(a.target, a.done_at), a.done_at)
    out |= {a.target for a in world.history if a.state == "succeeded" and a.incident_firing and a.type in removes
            and a.done_at is not None and a.done_at >= since and undone.get(a.target, a.done_at) <= a.done_at}
    if world.dry_run:  # what dry-run would have taken out, while its alert still fires
        out |= {a.target for a in world.history if a.state == "dry_run" and a.incident_firing and a.type in removes}
    return out


def _node_budget(step: Step, world: World) -> Verdict:
    b = world.safety.budget
    managed = world.cluster.managed
    out = nodebudget.unavailable(world.cluster, _in_flight(world))
    plan = {p.target for p in step.actions if ACTIONS[p.type].removes_node}
    after = set(out) | plan
    whole = nodebudget.check(b.limits, set(managed), set(out), after)
    lines = [f"{whole.unavailable} of {whole.total} managed nodes unavailable with this plan ({whole.why})"]
    failed = "" if whole.ok else f"{whole.unavailable} unavailable nodes would exceed the budget ({whole.why})"
    if b.max_gpu_percent is not None and len(after) > b.min_nodes and after != set(out):
        gpu_ok, why = nodebudget.gpu_check(b.max_gpu_percent, managed, after)
        lines.append(why)
        failed = failed or ("" if gpu_ok else f"{len(after)} nodes out would exceed the budget ({why})")
    pools = []
    if b.pools is not None:
        for pool in sorted({b.pools.pool_of(managed[n]) for n in plan if n in managed}):
            names = {n for n, v in managed.items() if b.pools.pool_of(v) == pool}
            c = nodebudget.check(b.pools.limits(pool), names, set(out) & names, after & names)
            pools.append((pool, c.unavailable, c.allowed, c.total))
            lines.append(f"pool {b.pools.label}={pool}: {c.unavailable}/{c.total} unavailable ({c.why})")
            failed = failed or ("" if c.ok else f"pool {b.pools.label}={pool}: {c.unavailable} of {c.total} "
                                f"unavailable would exceed its budget ({c.why})")
    use = BudgetUse(whole.unavailable, whole.allowed, whole.total, tuple(pools))
    line = "; ".join(lines)
    if failed:
        listed = ", ".join(f"{n} ({why})" for n, why in sorted(out.items())) or "none"
        return block("budget", f"{failed}; {line}; unavailable now: {listed}", budget=use)
    return ok(line, budget=use)


def _domain_budget(step: Step, world: World) -> Verdict:
    """A domain incident takes its domain out as one unit: it is counted against the domain budget
    of its kind (default 1 domain out at a time), not node by node. A domain is out while any of its
    managed members is out of service, whoever took it out, or a Vigil plan takes one out."""
    kind, domain = topo.key_of(step.incident)
    limit = world.safety.budget.domains.get(kind, 1)
    out = nodebudget.unavailable(world.cluster, _in_flight(world))
    groups = world.topology.members if world.topology is not None else {}
    down = {k: sorted(set(ms) & set(out)) for k, ms in groups.items() if k[0] == kind and set(ms) & set(out)}
    after = set(down) | {(kind, domain)}
    line = f"{len(after)} of {len(groups) or 1} {kind} domains out with this plan, max_domains {limit}"
    if len(after) > limit and (kind, domain) not in down:
        listed = ", ".join(f"{k[1]} ({', '.join(f'{n}: {out[n]}' for n in ns)})" for k, ns in sorted(down.items()))
        return block("budget", f"{line}: taking {kind} domain {domain} out would exceed the domain budget; "
                     f"out now: {listed}")
    return ok(f"{line} (the node budget counts members of a domain incident as one domain)")


def budgets(step: Step, world: World) -> Verdict:
    pods = _pod_budgets(step, world)
    if pods is not None:
        return pods
    if not any(ACTIONS[p.type].removes_node for p in step.actions):
        return ok("no node taken out of service")
    if not world.cluster.available:
        return ok("cluster view unavailable; node budget not checked")
    if topo.is_domain_incident(step.incident):
        return _domain_budget(step, world)
    return _node_budget(step, world)


def _gated(step: Step) -> PlannedAction | None:
    """The action the gates (window, approval) apply to: the first of a rule's chain, or an
    escalation step (one action; a held escalation is tried again later). A chain starts only when
    its first action may; each later action is gated again at its own admission, right before it
    runs, so the actions before a gated one run at once (cordon now, reboot tonight)."""
    return step.actions[0] if step.kind in ("first", "escalation") and step.actions else None


def _later(step: Step, gate: str) -> str:
    """The later actions of a chain this gate holds at their own turn, for the trace (and explain)."""
    later = [step_key(p) for p in step.actions[1:] if (step.rule.gate_of(p.type)[0] if gate == "approval"
                                                       else step.rule.gate_of(p.type)[1])]
    return f"; at its turn, {', '.join(later)} waits for its {gate}" if later and step.kind == "first" else ""


def denied(step: Step, world: World) -> Verdict:
    """A person denied a step of this incident: nothing more is done, the incident is theirs."""
    mine = world.approvals.get(step.incident.id) or {} if step.incident.id is not None else {}
    for p in step.actions:
        a = mine.get(step_key(p))
        if a is not None and a.verdict == DENIED:
            return Verdict(False, f"{step_key(p)} was denied by {a.by or 'someone'} ({a.reason}); handed to people, "
                           "nothing more is done", reason="denied", outcome="handed_over", step=step_key(p))
    return ok("no step of this incident was denied")


def window(step: Step, world: World) -> Verdict:
    p = _gated(step)
    if p is None:
        return ok(f"not gated for {step.kind} steps")
    _, names = step.rule.gate_of(p.type, step.kind)
    if not names:
        return ok("no maintenance window" + _later(step, "window"))
    closes = []
    for name in names:
        w = world.safety.windows.get(name)
        if w is None:
            return block("unknown_window", f"{step_key(p)}: no maintenance window named {name!r}")
        state = w.state(world.now)
        if not state.open and world.dry_run:  # dry-run asks nobody and waits for nothing: it says what would
            return ok(f"dry-run: {step_key(p)} would wait for window {name} (opens at {state.opens_at.isoformat()})")
        if not state.open:
            return Verdict(False, f"{step_key(p)}: window {name} opens at {state.opens_at.isoformat()}",
                           reason="window", not_before=state.opens_at, step=step_key(p))
        closes.append(f"{name} until {state.closes_at.isoformat()}")
    return ok(f"{step_key(p)} inside window {', '.join(closes)}" + _later(step, "window"))


def approval(step: Step, world: World) -> Verdict:
    p = _gated(step)
    if p is None:
        return ok(f"not gated for {step.kind} steps")
    needed, _ = step.rule.gate_of(p.type, step.kind)
    if not needed:
        return ok("no approval required" + _later(step, "approval"))
    key = step_key(p)
    a = (world.approvals.get(step.incident.id) or {}).get(key) if step.incident.id is not None else None
    if a is not None and a.valid(world.now, world.safety.approval_ttl):
        return ok(f"{key} approved by {a.by} at {a.at.isoformat()} ({a.reason})")
    if world.dry_run:
        return ok(f"dry-run: {key} would wait for approval")
    expired = (f" (the approval by {a.by} at {a.at.isoformat()} expired: approval_ttl "
               f"{world.safety.approval_ttl:.0f} s)" if a is not None and a.verdict == "approved" else "")
    return Verdict(False, f"{key} needs approval{expired}: remediator approve {step.incident.id} --reason ...",
                   reason="approval", step=key)


Rail = Callable[[Step, World], Verdict]
def repeat_offenders(step: Step, world: World) -> Verdict:
    """A node or GPU repaired max_repairs times within the window is not repaired again: the shell
    marks it an RMA candidate instead (remediator/runtime/repairs.py)."""
    repairs = [p for p in step.actions if ACTIONS[p.type].repair]
    if not repairs:
        return ok("no repair in this step")
    if world.repair is None:
        return ok("repair history not at hand; checked again when the repair runs")
    for p in repairs:
        why = exhausted(world.repairs, node=str(p.params.get("node", "")),
                        uuid=str(p.params.get("uuid") or step.incident.labels.get("uuid", "")),
                        settings=world.repair, now=world.now, incident_id=step.incident.id)
        if why:
            return block("repair_exhausted", why)
    return ok(f"under {world.repair.max_repairs} repairs of this node and GPU in "
              f"{world.repair.window / 86400:g} days")


RAILS: tuple[tuple[str, Rail], ...] = (
    ("paused", paused), ("stale", stale), ("min_firing", min_firing), ("target", target),
    ("ownership", ownership), ("topology", topology), ("one_repair", one_repair), ("denied", denied),
    ("availability", availability),
    ("cooldown", cooldown),
    ("rate_limit", rate_limit), ("repeat_offenders", repeat_offenders), ("guard", guard), ("breaker", breaker),
    ("budgets", budgets), ("window", window), ("approval", approval),
)
