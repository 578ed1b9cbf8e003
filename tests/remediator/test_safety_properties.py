"""Safety as a property, not a list of examples: a hypothesis state machine drives the real decision
core (`decide`) and the real follow-up planning (`plan_escalation`, `plan_step`, `after_verification`)
against a model of a cluster, through random interleavings of alerts, repeats, resolves,
escalation steps, operator cordons and uncordons, pauses, nodes going NotReady and replicas going
unready. After every step it checks the invariants:

- no pool's budget is exceeded by Vigil (and the cluster-wide budget neither);
- nothing is undone that Vigil does not own (uncordon only its own cordon; on resolve only this
  incident's);
- no pod action leaves its workload or Service below min_available;
- nothing changes while paused (globally or the namespace) or after the alert resolved;
- an unknown check never escalates.

Failing sequences are kept in the committed example database (hypothesis-examples/), replayed first
on every run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from remediator.config import parse_config
from remediator.domain.actions import ACTIONS
from remediator.domain.decide import after_verification, decide, plan_escalation, plan_step
from remediator.domain.models import (
    DOES_NOT_HOLD,
    FIELD_MANAGER,
    HOLDS,
    INCIDENT_ANNOTATION,
    UNKNOWN,
    CheckResult,
    ClusterView,
    Incident,
    NodeView,
    PastAction,
    PlannedAction,
    PodView,
    SafetyState,
    Taint,
    WorkloadView,
)
from remediator.domain.rails import Step, World

EXAMPLES = Path(__file__).with_name("hypothesis-examples")
SEQUENCES = int(os.environ.get("VIGIL_SEQUENCES", 10_000))  # make test runs 10,000; lower it to iterate
START = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
NODES = tuple(f"n{i}" for i in range(6))
POOL = {n: ("a" if i < 3 else "b") for i, n in enumerate(NODES)}
PODS = ("ml/p0", "ml/p1", "ml/p2")
POOL_MAX, GLOBAL_MAX = 1, 3
CONFIG = parse_config({
    "safety": {"max_alert_age": "1h", "budget": {"max_nodes": GLOBAL_MAX, "min_nodes": 1,
                                                 "pools": {"label": "pool", "default": {"max_nodes": POOL_MAX}}},
               "breaker": {"max_actions": 25, "window": "10m"}},
    "policy": {"rules": [
        {"name": "xid", "match": ['alertname="Xid"'],
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
         "verify": {"alert_resolved": True},
         "escalate": {"steps": [{"type": "drain_node", "params": {"node": "{{ labels.node }}"}},
                                {"type": "taint_node", "params": {"node": "{{ labels.node }}"}}],
                      "max_loops_per_target": 5},
         "on_resolved": {"uncordon": True}},
        {"name": "healthy", "match": ['alertname="Healthy"'],
         "actions": [{"type": "uncordon_node", "params": {"node": "{{ labels.node }}"}}]},
        {"name": "failover", "match": ['alertname="Degraded"'],
         "actions": [{"type": "failover_service", "params": {"namespace": "ml", "service": "svc",
                                                             "selector": {"pool": "standby"},
                                                             "restore_on_resolve": True}}]},
        {"name": "down", "match": ['alertname="Down"'],
         "actions": [{"type": "restart_pod", "params": {"namespace": "ml", "pod": "{{ labels.pod }}"}}],
         "verify": {"alert_resolved": True},
         "escalate": {"steps": [{"type": "quarantine_pod", "params": {"namespace": "ml", "pod": "{{ labels.pod }}"}}],
                      "max_loops_per_target": 5}},
    ]},
})
RULES = {r.name: r for r in CONFIG.rules}


@dataclasses.dataclass
class Tracked:
    incident: Incident
    rule: str
    escalated: int = 0
    acted: bool = False


class SafetyMachine(RuleBasedStateMachine):
    runs = 0  # sequences started, to show the run generated as many as it says

    def __init__(self) -> None:
        super().__init__()
        SafetyMachine.runs += 1
        self.now = START
        self.ready = dict.fromkeys(NODES, True)
        self.unschedulable = dict.fromkeys(NODES, False)
        self.owner = dict.fromkeys(NODES, "")  # the field manager of spec.unschedulable
        self.annotation = dict.fromkeys(NODES, "")  # vigil.io/incident: survives someone else's uncordon
        self.tainted: set[str] = set()
        self.pod_ready = dict.fromkeys(PODS, True)
        self.quarantined: set[str] = set()
        self.paused = False
        self.ns_paused = False
        self.node_paused: set[str] = set()
        self.marker = ""  # the Service's vigil.io/failed-over-for: which incident switched it
        self.selector_by_vigil = False  # does the Service still hold the selector Vigil set?
        self.history: list[PastAction] = []
        self.incidents: list[Tracked] = []
        self.violations: list[str] = []

    # ---- the model as the rails see it ----------------------------------------------------------

    def view(self) -> ClusterView:
        nodes = {n: NodeView(n, self.unschedulable[n], 8, self.annotations(n), {"pool": POOL[n]}, self.ready[n],
                             (Taint("vigil.io/unhealthy", "NoSchedule"),) if n in self.tainted else (), True,
                             self.owner[n] if self.unschedulable[n] else "") for n in NODES}
        pods = {p: PodView("Deployment/ml/llm", self.pod_ready[p], "n0", ("ml/svc",)) for p in PODS}
        endpoints = frozenset(p for p in PODS if self.pod_ready[p] and p not in self.quarantined)
        return ClusterView(nodes, frozenset({"ml"}) if self.ns_paused else frozenset(), True, pods,
                           {"Deployment/ml/llm": WorkloadView(3, sum(self.pod_ready.values()))},
                           {"ml/svc": endpoints})

    def annotations(self, n: str) -> dict[str, str]:
        out = {INCIDENT_ANNOTATION: self.annotation[n]} if self.annotation[n] else {}
        return {**out, "vigil.io/remediation": "disabled"} if n in self.node_paused else out

    def service_owner(self) -> str:
        """As the owner reader: Vigil's marker and the selector Vigil set, both still there."""
        return f"vigil:{self.marker}" if self.marker and self.selector_by_vigil else "someone else"

    def world(self) -> World:
        return World(self.view(), list(self.history), CONFIG.safety, SafetyState(paused=self.paused), self.now)

    def unavailable(self) -> set[str]:
        return {n for n in NODES if not self.ready[n] or self.unschedulable[n] or n in self.tainted}

    # ---- applying what passed, checking the invariants first -------------------------------------

    def _violate(self, text: str) -> None:
        self.violations.append(text)

    def _check_node(self, tracked: Tracked, kind: str, a: PlannedAction) -> None:
        spec = ACTIONS[a.type]
        out = self.unavailable()
        if spec.removes_node and a.target not in out:
            after = out | {a.target}
            in_pool = [n for n in after if POOL[n] == POOL[a.target]]
            if len(in_pool) > POOL_MAX or len(after) > GLOBAL_MAX:
                self._violate(f"{a.type}({a.target}) takes {sorted(after)} out: over budget")
        if a.type == "drain_node" and self.ns_paused and any(True for _ in PODS) and a.target == "n0":
            self._violate("drain of a node with pods of a paused namespace")
        if a.target in self.node_paused:
            self._violate(f"{a.type}({a.target}) on a paused node")
        if spec.undoes and self.unschedulable[a.target]:
            mine = self.owner[a.target] == FIELD_MANAGER
            if not mine or (kind == "uncordon" and self.annotation[a.target] != str(tracked.incident.id)):
                self._violate(f"uncordon of {a.target} owned by {self.owner[a.target]}/{self.annotation[a.target]}")

    def _check_pod(self, a: PlannedAction) -> None:
        if self.ns_paused:
            self._violate(f"{a.type}({a.target}) in a paused namespace")
        others = [p for p in PODS if p != a.target and self.pod_ready[p]]
        if a.type == "restart_pod" and len(others) < 1:
            self._violate(f"restart of {a.target} with no other Ready replica")
        serving = [p for p in PODS if p != a.target and self.pod_ready[p] and p not in self.quarantined]
        if a.type == "quarantine_pod" and len(serving) < 1:
            self._violate(f"quarantine of {a.target} leaves the Service without endpoints")

    def _check_service(self, tracked: Tracked, kind: str) -> None:
        if self.ns_paused:
            self._violate(f"failover_service ({kind}) in a paused namespace")
        if kind == "restore" and self.service_owner() != f"vigil:{tracked.incident.id}":
            self._violate(f"restore of a Service owned by {self.service_owner()}")

    def _apply_node(self, tracked: Tracked, a: PlannedAction) -> None:
        n = a.target
        if a.type in ("cordon_node", "drain_node") and not self.unschedulable[n]:
            self.unschedulable[n], self.owner[n], self.annotation[n] = True, FIELD_MANAGER, str(tracked.incident.id)
        elif a.type == "taint_node":
            self.tainted.add(n)
        elif a.type == "uncordon_node" and self.unschedulable[n]:
            self.unschedulable[n], self.owner[n], self.annotation[n] = False, "", ""

    def apply(self, tracked: Tracked, kind: str, decision) -> None:
        if decision.outcome != "act":
            return
        if self.paused:
            self._violate(f"{kind} acted while paused")
        if kind in ("first", "escalation") and tracked.incident.alert_status != "firing":
            self._violate(f"{kind} acted after the resolve")
        for a in decision.actions:
            if ACTIONS[a.type].target_kind == "node":
                self._check_node(tracked, kind, a)
                self._apply_node(tracked, a)
            elif a.type == "failover_service":
                self._check_service(tracked, kind)
                mine = kind == "first"
                self.marker, self.selector_by_vigil = (str(tracked.incident.id) if mine else ""), mine
            else:
                self._check_pod(a)
                if a.type == "restart_pod":
                    self.pod_ready[a.target] = False  # its replacement starts unready
                else:
                    self.quarantined.add(a.target)
            self.history.append(PastAction(tracked.incident.id, tracked.rule, a.type, a.target, self.now, "succeeded",
                                           workload=a.workload))
        tracked.acted = True

    # ---- what happens --------------------------------------------------------------------------

    def _fire(self, alertname: str, labels: dict[str, str], age: float) -> None:
        inc = Incident(f"f{len(self.incidents)}", self.now - dt.timedelta(seconds=age),
                       {"alertname": alertname, **labels}, {}, "firing", id=len(self.incidents) + 1)
        decision = decide(inc, CONFIG.rules, self.history, self.view(), CONFIG.safety,
                          SafetyState(paused=self.paused), self.now)
        tracked = Tracked(inc, decision.rule or "")
        self.incidents.append(tracked)
        self.apply(tracked, "first", decision)

    @rule(node=st.sampled_from(NODES), age=st.sampled_from([5.0, 7200.0]))
    def xid(self, node: str, age: float) -> None:
        self._fire("Xid", {"node": node}, age)

    @rule(node=st.sampled_from(NODES))
    def healthy(self, node: str) -> None:
        self._fire("Healthy", {"node": node}, 5.0)

    @rule()
    def degraded(self) -> None:
        self._fire("Degraded", {}, 5.0)

    @rule()
    def operator_edits_the_service(self) -> None:
        self.selector_by_vigil = False  # their own selector; Vigil's marker annotation stays

    @rule(pod=st.sampled_from(PODS))
    def pod_down(self, pod: str) -> None:
        self._fire("Down", {"pod": pod.split("/")[1]}, 5.0)

    @precondition(lambda self: self.incidents)
    @rule(i=st.integers(0, 1000), outcome=st.sampled_from([HOLDS, DOES_NOT_HOLD, UNKNOWN]))
    def verify_then_maybe_escalate(self, i: int, outcome: str) -> None:
        tracked = self.incidents[i % len(self.incidents)]
        rule_ = RULES.get(tracked.rule)
        if rule_ is None or rule_.verify is None or not tracked.acted:
            return
        next_step = after_verification(CheckResult(outcome, "model"), rule_)
        if outcome == UNKNOWN and next_step == "escalate":
            self._violate("an unknown verification escalated")
        if next_step != "escalate" or tracked.escalated >= len(rule_.escalate.steps):
            return
        decision = plan_escalation(tracked.incident, rule_, tracked.escalated, self.world())
        tracked.escalated += 1
        self.apply(tracked, "escalation", decision)

    @precondition(lambda self: self.incidents)
    @rule(i=st.integers(0, 1000))
    def resolve(self, i: int) -> None:
        tracked = self.incidents[i % len(self.incidents)]
        if tracked.incident.alert_status != "firing":
            return
        tracked.incident = dataclasses.replace(tracked.incident, alert_status="resolved")
        rule_ = RULES.get(tracked.rule)
        if rule_ is None:
            return
        for a in [a for a in self.history if a.incident_id == tracked.incident.id and ACTIONS[a.type].restorable]:
            params = {"namespace": "ml", "service": "svc"}  # as recorded with the action
            step = Step("restore", tracked.incident, rule_, (PlannedAction(a.type, a.target, params),),
                        owner=self.service_owner())
            self.apply(tracked, "restore", plan_step(step, self.world()))
        if rule_.uncordon_on_resolved is None:
            return
        for node in sorted({a.target for a in self.history if a.incident_id == tracked.incident.id and
                            ACTIONS[a.type].undo == "uncordon_node"}):
            step = Step("uncordon", tracked.incident, rule_, (PlannedAction("uncordon_node", node, {"node": node}),))
            self.apply(tracked, "uncordon", plan_step(step, self.world()))

    @precondition(lambda self: self.incidents)
    @rule(i=st.integers(0, 1000))
    def repeat(self, i: int) -> None:
        """A resent notification is the same incident (the ledger dedupes): the engine decides nothing new;
        a replay of an old one is stale."""
        tracked = self.incidents[i % len(self.incidents)]
        self._fire(tracked.incident.alertname, {k: v for k, v in tracked.incident.labels.items()
                                               if k != "alertname"}, 7200.0)

    @rule(node=st.sampled_from(NODES), cordon=st.booleans())
    def operator(self, node: str, cordon: bool) -> None:
        if self.unschedulable[node] != cordon:  # as kubectl: nothing at all when already so
            self.unschedulable[node], self.owner[node] = cordon, "kubectl" if cordon else ""

    @rule(node=st.sampled_from(NODES), ready=st.booleans())
    def node_ready(self, node: str, ready: bool) -> None:
        self.ready[node] = ready

    @rule(pod=st.sampled_from(PODS), ready=st.booleans())
    def pod_readiness(self, pod: str, ready: bool) -> None:
        self.pod_ready[pod] = ready
        if ready:
            self.quarantined.discard(pod)  # a new pod, serving again

    @rule(paused=st.booleans(), namespace=st.booleans(), node=st.sampled_from((None, *NODES)))
    def pause(self, paused: bool, namespace: bool, node: str | None) -> None:
        self.paused, self.ns_paused = paused, namespace
        self.node_paused = {node} if node else set()

    @rule(minutes=st.sampled_from([1, 5, 30]))
    def time_passes(self, minutes: int) -> None:
        self.now += dt.timedelta(minutes=minutes)

    @invariant()
    def nothing_harmful(self) -> None:
        assert not self.violations, self.violations


def test_the_decision_core_and_follow_up_planning_keep_the_invariants():
    SafetyMachine.runs = 0
    run_state_machine_as_test(SafetyMachine, settings=settings(
        max_examples=SEQUENCES, stateful_step_count=12, deadline=None, derandomize=False,
        database=DirectoryBasedExampleDatabase(EXAMPLES), suppress_health_check=list(HealthCheck)))
    assert SafetyMachine.runs >= SEQUENCES
