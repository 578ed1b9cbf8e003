"""The decision core: (incident, policy, history, cluster view, safety state, now) -> Decision.

Pure: no I/O, no clock, no Kubernetes, no SQLite. `remediator explain`, dry-run, the engine, the
follow-ups and the tests all call `decide` (first actions) and `plan_step` (any later step:
escalation, restore, uncordon), which run the same rails (`remediator.domain.rails`) in the same
order, so what is explained is what runs. Decisions are made one at a time by the engine, so the
budget and the breaker see every earlier plan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import jinja2

from remediator.domain.actions import ACTIONS
from remediator.domain.approvals import Approvals
from remediator.domain.models import (
    HOLDS,
    IN_FLIGHT,
    UNKNOWN,
    CheckResult,
    ClusterView,
    Decision,
    Incident,
    PastAction,
    PlannedAction,
    SafetyState,
)
from remediator.domain.policy import Action, Rule, context_of
from remediator.domain.rails import KINDS, RAILS, Step, World, waits
from remediator.domain.repair import RepairRecord, RepairSettings
from remediator.domain.safety import Safety
from remediator.domain.topology import MEMBERS_ANNOTATION, Correlation, is_domain_incident, key_of


class TemplateFailure(ValueError):
    """A parameter template failed for this alert (a missing label, a bad filter)."""


def alert_context(incident: Incident) -> dict:
    return context_of(incident.labels, incident.annotations,
                      alert={"fingerprint": incident.fingerprint, "startsAt": incident.starts_at.isoformat(),
                             "alertname": incident.alertname})


def render(actions: Sequence[Action], incident: Incident) -> tuple[PlannedAction, ...]:
    """The rule's actions with their parameters rendered from the alert; raises TemplateFailure."""
    context = alert_context(incident)
    planned = []
    for action in actions:
        try:
            params = action.render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateFailure(f"a parameter needs a label the alert lacks: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateFailure(f"a parameter template failed: {exc}") from exc
        spec = ACTIONS[action.type]
        try:
            amount = spec.amount_of(params)
        except ValueError as exc:
            raise TemplateFailure(str(exc)) from exc
        p = PlannedAction(action.type, spec.target_of(params), params, amount=amount)
        if not all(p.target.split("/")):
            raise TemplateFailure(f"{p.type}: the target rendered empty ({p.target!r})")
        planned.append(p)
    return tuple(planned)


def members_of(incident: Incident, topology: Correlation | None) -> tuple[str, ...]:
    """A domain incident's members: as the nodes' labels say now, else as recorded when it opened."""
    found = topology.members.get(key_of(incident)) if topology is not None else None
    return found or tuple(n for n in incident.annotations.get(MEMBERS_ANNOTATION, "").split(",") if n)


def render_domain(actions: Sequence[Action], incident: Incident, names: Sequence[str]) -> tuple[PlannedAction, ...]:
    """A domain rule's actions for a domain incident: each node action once per member (as if the
    alert named that node: `{{ labels.node }}`), all members' first, then the next action; any other
    action once. Raises TemplateFailure."""
    planned: list[PlannedAction] = []
    for action in actions:
        if ACTIONS[action.type].target_kind != "node":
            planned += render((action,), incident)
            continue
        for name in names:
            planned += render((action,), dataclasses.replace(incident, labels={**incident.labels, "node": name}))
    return tuple(planned)


def guard_query(rule: Rule, incident: Incident) -> str | None:
    """The rule's guard PromQL, rendered from the alert, for the shell to evaluate."""
    return rule.guard.render(context_of(incident.labels, incident.annotations)) if rule.guard else None


def _with_workloads(actions: Sequence[PlannedAction], cluster: ClusterView) -> tuple[PlannedAction, ...]:
    """Pod actions learn their pod's workload (for the per-workload budget and availability)."""
    out = []
    for p in actions:
        pod = cluster.pods.get(p.target) if ACTIONS[p.type].targets_pod else None
        out.append(dataclasses.replace(p, workload=pod.workload) if pod is not None else p)
    return tuple(out)


def plan_step(step: Step, world: World, trace: Sequence[str] = ()) -> Decision:
    """Run the rails, in order, over one step; the first that stops it decides."""
    if step.kind not in KINDS:
        raise ValueError(f"unknown step kind {step.kind!r}")
    step = dataclasses.replace(step, actions=_with_workloads(step.actions, world.cluster))
    lines = [*trace, f"{step.kind}: " + ", ".join(f"{p.type}({p.target})" for p in step.actions)]
    budget = None
    for name, rail in RAILS:
        verdict = rail(step, world)
        budget = verdict.budget or budget
        if not verdict.passed:
            outcome = "wait" if waits(verdict.reason) else "joined" if verdict.joined else verdict.outcome
            word = {"defer": "defer", "wait": f"wait ({verdict.reason})",
                    "handed_over": f"handed over ({verdict.reason})"}.get(outcome, f"blocked ({verdict.reason})")
            lines.append(f"{name}: {word}: {verdict.line}")
            return Decision(outcome, step.rule.name, (),
                            reason=verdict.reason, detail=verdict.line, trace=tuple(lines), kind=step.kind,
                            not_before=verdict.not_before, open_breaker=verdict.open_breaker, budget=budget,
                            step=verdict.step)
        lines.append(f"{name}: ok: {verdict.line}")
    outcome = "dry_run" if world.dry_run else "act"
    lines.append("dry-run: would act, changing nothing" if world.dry_run else "act")
    return Decision(outcome, step.rule.name, step.actions, trace=tuple(lines), budget=budget, kind=step.kind)


def admission_world(world: World, incident_id: int | None) -> World:
    """The world a planned action is admitted against, right before it runs: its own incident's
    actions are not counted against it (its cooldown, its own node), and neither are other plans
    not yet admitted (they wait their turn behind this one). What runs and what ran counts."""
    history = [a for a in world.history if a.incident_id != incident_id and (a.state not in IN_FLIGHT or a.admitted)]
    return dataclasses.replace(world, history=history)


def recheck(step: Step, world: World) -> Decision | None:
    """Every rail again, right before a planned action runs (a first action, the next step of its
    chain, a plan resumed after a restart or one that waited behind busy workers), against the
    current world and config: the decision that stops it (wait or refuse), or None to run it."""
    decision = plan_step(step, admission_world(world, step.incident.id))
    return None if decision.outcome in ("act", "dry_run") else decision


def match(rules: Sequence[Rule], labels: dict[str, str]) -> tuple[Rule | None, list[str]]:
    rule = next((r for r in rules if r.matches(labels)), None)
    lines = []
    for r in rules:
        if r is rule:
            lines.append(f"rule {r.name!r} matches ({', '.join(map(str, r.matchers))})")
            break
        lines.append(f"rule {r.name!r} does not match")
    return rule, lines


def decide(incident: Incident, rules: Sequence[Rule], history: Sequence[PastAction], cluster: ClusterView,
           safety: Safety, state: SafetyState, now: dt.datetime, *, dry_run: bool | None = None,
           guard: CheckResult | None = None, repairs: Sequence[RepairRecord] = (),
           repair: RepairSettings | None = None, approvals: Approvals | None = None,
           topology: Correlation | None = None) -> Decision:
    """The first actions for an incident: match a rule, render its actions, run the rails. A domain
    incident's node actions are rendered once per member of its domain."""
    trace = [f"alert {incident.alertname or '?'} fingerprint {incident.fingerprint} "
             f"startsAt {incident.starts_at.isoformat()} status {incident.alert_status}"]
    if incident.alert_status != "firing":
        trace.append("resolved: never act on a resolved alert")
        return Decision("resolved", trace=tuple(trace), reason="resolved", detail="the alert resolved")
    rule, lines = match(rules, incident.labels)
    trace += lines
    if rule is None:
        return Decision("no_match", trace=tuple(trace), reason="no_match", detail="no rule matches this alert")
    try:
        planned = (render_domain(rule.actions, incident, members_of(incident, topology))
                   if is_domain_incident(incident) else render(rule.actions, incident))
    except TemplateFailure as exc:
        trace.append(f"blocked (template_error): {exc}")
        return Decision("blocked", rule.name, reason="template_error", detail=str(exc), trace=tuple(trace))
    world = World(cluster, history, safety, state, now, safety.dry_run if dry_run is None else dry_run, guard,
                  repairs, repair, approvals=approvals or {}, topology=topology)
    return plan_step(Step("first", incident, rule, planned), world, trace)


def after_verification(result: CheckResult, rule: Rule) -> str:
    """What follows a verification: "verified" (it holds), "escalate" (it does not hold), or
    "withhold" (unknown: nothing escalates on no data unless the rule says on_unknown: escalate)."""
    if result.outcome == HOLDS:
        return "verified"
    if result.outcome == UNKNOWN and (rule.verify is None or rule.verify.on_unknown != "escalate"):
        return "withhold"
    return "escalate"


# Failures that say nothing about the node: the API refused or did not answer, the parameters or the
# settings were wrong, this replica stopped leading. They do not continue an on_failure ladder.
NOT_THE_NODE = frozenset({"api_error", "error", "bad_params", "not_configured", "unknown_action", "not_leader",
                          "no_cluster", "interrupted"})


def continues_ladder(reason: str) -> bool:
    """Whether a failed action's reason is the node's failure (unknown is not failure)."""
    return reason not in NOT_THE_NODE


def plan_escalation(incident: Incident, rule: Rule, index: int, world: World) -> Decision:
    """Escalation step `index` of the rule's ladder, through the same rails as a first action."""
    return _plan_ladder_step(
        "escalation", rule.escalate.steps, index, incident, rule, world,
        why="verification did not hold", resolved="never escalate after the alert resolved")


def plan_on_failure(incident: Incident, rule: Rule, index: int, world: World) -> Decision:
    """Step `index` of the rule's on_failure ladder (an action failed: replace, or stop and mark),
    through the same rails as a first action."""
    return _plan_ladder_step(
        "on_failure", rule.on_failure, index, incident, rule, world,
        why="an action of the ladder failed", resolved="never continue a ladder after the alert resolved")


def _plan_ladder_step(kind: str, steps: Sequence[Action], index: int, incident: Incident, rule: Rule, world: World, *,
                      why: str, resolved: str) -> Decision:
    trace = [f"{kind} step {index + 1} of {len(steps)}: {why}"]
    if incident.alert_status != "firing":
        trace.append(f"resolved: {resolved}")
        return Decision("resolved", rule.name, reason="resolved", detail="the alert resolved", trace=tuple(trace),
                        kind=kind)
    try:
        planned = render(steps[index:index + 1], incident)
    except TemplateFailure as exc:
        trace.append(f"blocked (template_error): {exc}")
        return Decision("blocked", rule.name, reason="template_error", detail=str(exc), trace=tuple(trace),
                        kind=kind)
    return plan_step(Step(kind, incident, rule, planned), world, trace)
