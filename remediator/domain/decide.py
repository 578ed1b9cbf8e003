"""The decision core: (incident, policy, history, cluster view, safety state, now) -> Decision.

Pure: no I/O, no clock, no Kubernetes, no SQLite. `remediator explain`, dry-run, the engine and
the tests all call `decide`, so what is explained is what runs. Decisions are made one at a
time by the engine, so the budget and the breaker see every earlier plan.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import jinja2

from remediator.domain.models import (
    ATTEMPTED,
    CORDONED_BY_ANNOTATION,
    IN_FLIGHT,
    LIVE_STATES,
    PAUSE_ANNOTATION,
    BudgetUse,
    ClusterView,
    Decision,
    GuardResult,
    Incident,
    PastAction,
    PlannedAction,
    SafetyState,
)
from remediator.domain.policy import ACTIONS, Rule, context_of, target_of
from remediator.domain.safety import Safety


class _Trace(list):
    def add(self, text: str) -> None:
        self.append(text)


def _blocked(trace: _Trace, rule: Rule | None, reason: str, detail: str, **kw: Any) -> Decision:
    trace.add(f"blocked ({reason}): {detail}")
    return Decision("blocked", rule.name if rule else None, reason=reason, detail=detail, trace=tuple(trace), **kw)


def _render(rule: Rule, incident: Incident) -> list[PlannedAction]:
    context = {"labels": incident.labels, "annotations": incident.annotations,
               "alert": {"fingerprint": incident.fingerprint, "startsAt": incident.starts_at.isoformat(),
                         "alertname": incident.alertname}}
    planned = []
    for action in rule.actions:
        params = action.render(context)
        amount = float(params.get("step", 100)) if action.type == "shift_traffic" else 0.0
        planned.append(PlannedAction(action.type, target_of(action.type, params), params, amount=amount))
    return planned


def guard_query(rule: Rule, incident: Incident) -> str | None:
    """The rule's guard PromQL, rendered from the alert, for the shell to evaluate."""
    return rule.guard.render(context_of(incident.labels, incident.annotations)) if rule.guard else None


def _removes_node(action_type: str) -> bool:
    spec = ACTIONS.get(action_type)
    return bool(spec and spec.removes_node)


def node_budget(safety: Safety, cluster: ClusterView, out: set[str]) -> tuple[bool, int, str]:
    """Whether `out` nodes out of service at once is within the budget: (ok, allowed, why)."""
    b = safety.budget
    total = len(cluster.nodes)
    limits = []
    if b.max_nodes is not None:
        limits.append((b.max_nodes, f"max_nodes {b.max_nodes}"))
    if b.max_percent is not None:
        n = math.floor(total * b.max_percent / 100)
        limits.append((n, f"max_percent {b.max_percent:g}% of {total} = {n}"))
    allowed = min([n for n, _ in limits], default=total)
    allowed = max(allowed, b.min_nodes)
    ok = len(out) <= allowed
    why = ", ".join(w for _, w in limits) or "no node limit"
    if b.max_gpu_percent is not None and len(out) > b.min_nodes:
        total_gpus = sum(n.gpus for n in cluster.nodes.values())
        out_gpus = sum(cluster.nodes[n].gpus for n in out if n in cluster.nodes)
        gpu_allowed = total_gpus * b.max_gpu_percent / 100
        why += f", max_gpu_percent {b.max_gpu_percent:g}% of {total_gpus} GPUs = {gpu_allowed:g} ({out_gpus} out)"
        ok = ok and out_gpus <= gpu_allowed
    return ok, allowed, f"{why}, floor min_nodes {b.min_nodes}"


def decide(incident: Incident, rules: Sequence[Rule], history: Sequence[PastAction], cluster: ClusterView,
           safety: Safety, state: SafetyState, now: dt.datetime, *, dry_run: bool | None = None,
           guard: GuardResult | None = None) -> Decision:
    dry = safety.dry_run if dry_run is None else dry_run
    trace = _Trace()
    trace.add(f"alert {incident.alertname or '?'} fingerprint {incident.fingerprint} "
              f"startsAt {incident.starts_at.isoformat()} status {incident.alert_status}")
    if incident.alert_status != "firing":
        trace.add("resolved: never act on a resolved alert")
        return Decision("resolved", trace=tuple(trace), reason="resolved", detail="the alert resolved")

    rule = next((r for r in rules if r.matches(incident.labels)), None)
    for r in rules:
        if r is rule:
            trace.add(f"rule {r.name!r} matches ({', '.join(map(str, r.matchers))})")
            break
        trace.add(f"rule {r.name!r} does not match")
    if rule is None:
        return Decision("no_match", trace=tuple(trace), reason="no_match", detail="no rule matches this alert")

    try:
        planned = _render(rule, incident)
    except jinja2.UndefinedError as exc:
        return _blocked(trace, rule, "template_error", f"a parameter needs a label the alert lacks: {exc.message}")
    except jinja2.TemplateError as exc:
        return _blocked(trace, rule, "template_error", f"a parameter template failed: {exc}")
    for p in planned:
        if not all(p.target.split("/")):
            return _blocked(trace, rule, "template_error", f"{p.type}: the target rendered empty ({p.target!r})")
    trace.add("plan: " + ", ".join(f"{p.type}({p.target})" for p in planned))

    if state.paused:
        return _blocked(trace, rule, "paused", "remediation is paused globally")
    age = (now - incident.starts_at).total_seconds()
    if age > safety.max_alert_age and not rule.allow_stale:
        return _blocked(trace, rule, "stale",
                        f"the alert started {age:.0f} s ago, more than max_alert_age {safety.max_alert_age:.0f} s")
    if age < rule.min_firing:
        not_before = incident.starts_at + dt.timedelta(seconds=rule.min_firing)
        trace.add(f"defer: firing for {max(age, 0):.1f} s, the rule needs {rule.min_firing:.0f} s")
        return Decision("defer", rule.name, reason="min_firing", detail=f"not before {not_before.isoformat()}",
                        trace=tuple(trace), not_before=not_before)

    for i, p in enumerate(planned):
        ns = p.params.get("namespace")
        if ns is not None and ns in cluster.paused_namespaces:
            return _blocked(trace, rule, "paused", f"namespace {ns} has {PAUSE_ANNOTATION}=disabled")
        if p.type in ("restart_pod", "quarantine_pod") and cluster.available:
            if p.target not in cluster.pods:
                return _blocked(trace, rule, "unknown_target", f"{p.type}: no pod {p.target}")
            workload = cluster.pods[p.target]
            if not workload and str(p.params.get("allow_bare", "")).lower() not in ("true", "1", "yes"):
                return _blocked(trace, rule, "bare_pod", f"{p.target} has no controller; the rule does not "
                                "allow restarting bare pods")
            planned[i] = p = PlannedAction(p.type, p.target, p.params, workload, p.amount)
        if ACTIONS[p.type].target == ("node",) and cluster.available:
            node = cluster.nodes.get(p.target)
            if node is None:
                return _blocked(trace, rule, "unknown_target", f"{p.type}: no node named {p.target!r}")
            if node.annotations.get(PAUSE_ANNOTATION) == "disabled":
                return _blocked(trace, rule, "paused", f"node {p.target} has {PAUSE_ANNOTATION}=disabled")
            if p.type == "uncordon_node" and node.unschedulable and \
                    node.annotations.get(CORDONED_BY_ANNOTATION) != "vigil":
                return _blocked(trace, rule, "foreign_cordon",
                                f"node {p.target} was cordoned by someone else; Vigil never undoes that")

    counted = (*LIVE_STATES, "dry_run") if dry else LIVE_STATES
    live = [a for a in history if a.state in counted]
    if rule.cooldown:
        since = now - dt.timedelta(seconds=rule.cooldown)
        for p in planned:
            recent = [a for a in live if a.rule == rule.name and a.target == p.target and a.at >= since]
            if recent:
                return _blocked(trace, rule, "cooldown",
                                f"{p.target}: rule acted at {max(a.at for a in recent).isoformat()}, "
                                f"cooldown {rule.cooldown:.0f} s")
    if rule.max_actions:
        since = now - dt.timedelta(seconds=rule.window)
        acted = {a.incident_id for a in live if a.rule == rule.name and a.at >= since}
        if len(acted) >= rule.max_actions:
            return _blocked(trace, rule, "rate_limit",
                            f"{len(acted)} incidents acted on in {rule.window:.0f} s, max_actions {rule.max_actions}")

    if rule.guard:
        mode = rule.guard.mode
        if guard is None:
            trace.add("guard: not evaluated here (no Prometheus); the engine evaluates it before acting")
        elif guard.holds is None:
            if mode != "fail_open":
                return _blocked(trace, rule, "guard_unavailable",
                                f"the guard could not be evaluated ({guard.detail}); failing closed")
            trace.add(f"guard: unavailable ({guard.detail}); the rule fails open")
        elif not guard.holds:
            return _blocked(trace, rule, "guard", f"the guard does not hold: {guard.detail}")
        else:
            trace.add(f"guard holds: {guard.detail}")

    if state.breaker_open:
        return _blocked(trace, rule, "breaker_open", "the circuit breaker is open; reset it after checking the storm")
    br = safety.breaker
    since = now - dt.timedelta(seconds=br.window)
    attempted = (*ATTEMPTED, "dry_run") if dry else ATTEMPTED
    recent = sum(1 for a in history if a.state in attempted and a.at >= since)
    if recent + len(planned) > br.max_actions:
        return _blocked(trace, rule, "breaker_open",
                        f"{recent} actions in the last {br.window:.0f} s plus {len(planned)} would exceed "
                        f"{br.max_actions}: opening the circuit breaker", open_breaker=True)

    b = safety.budget
    since = now - dt.timedelta(seconds=b.window)
    for p in planned:
        if p.workload and b.max_pod_restarts_per_workload:
            done = sum(1 for a in live if a.workload == p.workload and a.at >= since)
            if done >= b.max_pod_restarts_per_workload:
                return _blocked(trace, rule, "budget", f"{p.workload}: {done} pods restarted in {b.window:.0f} s, "
                                f"max_pod_restarts_per_workload {b.max_pod_restarts_per_workload}")
        if p.type == "shift_traffic" and b.max_traffic_shift_percent is not None:
            moved = sum(a.amount for a in live if a.type == "shift_traffic" and a.target == p.target and a.at >= since)
            if moved + p.amount > b.max_traffic_shift_percent:
                return _blocked(trace, rule, "budget", f"{p.target}: {moved:g}% of traffic moved in {b.window:.0f} s "
                                f"plus {p.amount:g}% exceeds max_traffic_shift_percent {b.max_traffic_shift_percent:g}")

    budget = None
    removing = [p for p in planned if ACTIONS[p.type].removes_node]
    if removing and cluster.available:
        out = {n.name for n in cluster.nodes.values() if n.unschedulable}
        out |= {a.target for a in history if a.state in IN_FLIGHT and _removes_node(a.type)}
        if dry:  # what dry-run would have taken out, while its alert still fires
            out |= {a.target for a in history if a.state == "dry_run" and a.incident_firing and _removes_node(a.type)}
        after = out | {p.target for p in removing}
        ok, allowed, why = node_budget(safety, cluster, after)
        budget = BudgetUse(len(after), allowed, len(cluster.nodes))
        trace.add(f"budget: {len(after)} of {len(cluster.nodes)} nodes out of service with this plan ({why})")
        if not ok and after != out:
            return _blocked(trace, rule, "budget",
                            f"{len(after)} nodes out of service would exceed the budget ({why}); "
                            f"out now: {', '.join(sorted(out)) or 'none'}", budget=budget,
                            actions=tuple(planned))  # kept as blocked attempts: the breaker counts them
    elif removing:
        trace.add("budget: cluster view unavailable; not checked")

    outcome = "dry_run" if dry else "act"
    trace.add("dry-run: would act, changing nothing" if dry else "act")
    return Decision(outcome, rule.name, tuple(planned), trace=tuple(trace), budget=budget)
