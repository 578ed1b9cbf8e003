"""The engine: takes incidents the ledger holds, decides them one at a time with the pure core,
and runs the resulting actions on a small worker pool. After a crash it resumes the actions the
ledger holds as planned or running; every action is idempotent, so each takes effect once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from remediator.cluster.executor import Outcome
from remediator.cluster.kube import Kube, KubeError
from remediator.cluster.prom import PromChecker
from remediator.cluster.repair import RepairContext
from remediator.cluster.view import read_cluster_view
from remediator.config import Config
from remediator.domain.decide import decide, guard_query
from remediator.domain.models import CheckResult, ClusterView, Decision, Incident, PastAction, SafetyState
from remediator.domain.rails import World
from remediator.runtime.followup import Followup
from remediator.runtime.metrics import Metrics
from remediator.runtime.repairs import RepairRails
from remediator.runtime.runner import ClusterOps, Runner
from remediator.store.ledger import Ledger, from_ts, ts

log = logging.getLogger(__name__)
BREAKER_KEY = "breaker_opened_at"
PAUSE_KEY = "paused"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_safety_state(ledger: Ledger) -> SafetyState:
    """Pause and breaker as the ledger holds them (no timeout handling: see Engine.safety_state)."""
    return SafetyState(paused=ledger.get_state(PAUSE_KEY) == "true",
                       breaker_open=ledger.get_state(BREAKER_KEY) is not None)


class _Context:
    """What the decisions of one tick share: the ledger's history, extended by each new plan
    (decisions are serial, so this is exact), the safety state, and a cluster view at most 2 s old.
    A storm of 10,000 alerts is then 10,000 decisions, not 10,000 history and cluster reads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        now = engine.clock()
        window = dt.timedelta(seconds=engine.config.history_window)
        self.history: list[PastAction] = engine.ledger.history(now - window)
        self.repairs = engine.repair_history(now)
        self.state: SafetyState = engine.safety_state(now)
        self._view: ClusterView | None = None
        self._view_at = 0.0

    def cluster(self) -> ClusterView:
        if self._view is None or time.monotonic() - self._view_at > 2.0:
            self._view, self._view_at = self.engine._cluster_view(), time.monotonic()
        return self._view


class Engine:
    def __init__(self, config: Config, ledger: Ledger, kube: Kube | None, metrics: Metrics,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.config, self.ledger, self.kube, self.metrics, self.clock = config, ledger, kube, metrics, clock
        self.prom = PromChecker(config.prometheus_url, config.prometheus_timeout) if config.prometheus_url else None
        self.rules = {r.name: r for r in config.rules}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="vigil-action")
        self._thread = threading.Thread(target=self._run, name="vigil-engine", daemon=True)
        self._busy: set[object] = set()
        self._busy_lock = threading.Lock()
        self.repair = RepairContext(kube, config.repair, self.prom) if kube is not None else None
        self.repair_rails = RepairRails(ledger=ledger, settings=config.repair, ctx=self.repair,
                                        on_exhausted=metrics.repairs_exhausted.inc, clock=clock)
        self.runner = Runner(ledger, kube, metrics, clock, repair=self.repair, rails=self.repair_rails)
        ops = ClusterOps(kube, repair=self.repair) if kube is not None else None
        self.followup = Followup(ledger, self.runner, ops, self.prom,
                                 metrics, self.rules, self.world, self._guard, self.note_decision, clock,
                                 self._stop.is_set, self._stop.wait)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    # ---- safety state shared with the API -------------------------------------------------

    def safety_state(self, now: dt.datetime) -> SafetyState:
        opened = self.ledger.get_state(BREAKER_KEY)
        reset_after = self.config.safety.breaker.reset_after
        if opened and reset_after and (now - from_ts(opened)).total_seconds() >= reset_after:
            self.reset_breaker(now, by="timeout")
        return read_safety_state(self.ledger)

    def reset_breaker(self, now: dt.datetime, by: str) -> bool:
        was_open = self.ledger.get_state(BREAKER_KEY) is not None
        self.ledger.set_state(BREAKER_KEY, None)
        if was_open:
            self.ledger.audit("breaker_reset", {"by": by}, now)
            log.warning("circuit breaker reset by %s", by)
        self.metrics.breaker_open.set(0)
        return was_open

    def set_paused(self, paused: bool, now: dt.datetime, by: str) -> None:
        self.ledger.set_state(PAUSE_KEY, "true" if paused else None)
        self.ledger.audit("pause" if paused else "unpause", {"by": by}, now)
        self.metrics.paused.set(1 if paused else 0)

    # ---- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for incident_id, chain in self.ledger.incomplete_actions().items():
                log.info("resuming incident %d after a restart (%d actions)", incident_id, len(chain))
                self._submit(incident_id, chain)
        except Exception:
            log.exception("could not resume incomplete actions")
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # the loop must survive a bad incident or a ledger hiccup
                log.exception("engine tick failed")
                self._stop.wait(1.0)
            timeout = 1.0
            wake_at = self.ledger.next_wake()
            if wake_at is not None:
                timeout = min(timeout, max((wake_at - self.clock()).total_seconds(), 0.0))
            self._wake.wait(timeout)
            self._wake.clear()

    def _cluster_view(self) -> ClusterView:
        if self.kube is None:
            return ClusterView(available=False)
        try:
            return read_cluster_view(self.kube)
        except (KubeError, OSError) as exc:
            log.warning("cluster view unavailable: %s", exc)
            return ClusterView(available=False)

    def _tick(self) -> None:
        due = self.ledger.due(self.clock())
        ctx = _Context(self) if due else None
        for incident in due:
            if self._stop.is_set():
                return
            self.decide_and_record(incident, ctx)
        for inc in self.ledger.resolved_followups():
            self._submit_task(f"after:{inc['id']}", self.followup.after_resolve, inc)

    def decide_and_record(self, incident: Incident, ctx: _Context | None = None) -> Decision:
        ctx = ctx or _Context(self)
        now = self.clock()
        history, cluster, state = ctx.history, ctx.cluster(), ctx.state
        if self.kube is not None and not cluster.available:
            decision = Decision("defer", reason="cluster_unavailable", detail="Kubernetes did not answer",
                                trace=("the cluster view is unavailable; retrying",),
                                not_before=now + dt.timedelta(seconds=5))
        else:
            decision = decide(incident, self.config.rules, history, cluster, self.config.safety, state, now,
                              guard=self._guard(incident), repairs=ctx.repairs, repair=self.config.repair)
        if decision.open_breaker:
            ctx.state = dataclasses.replace(ctx.state, breaker_open=True)
        self.note_decision(incident, decision)
        ids = self.ledger.save_decision(incident.id, decision, now)
        kept = {"act": "planned", "dry_run": "dry_run", "blocked": "blocked"}.get(decision.outcome)
        if kept:  # later decisions of this tick see this plan (budget, breaker, cooldown)
            ctx.history.extend(PastAction(incident.id, decision.rule or "", a.type, a.target, now, kept,
                                          workload=a.workload, amount=a.amount) for a in decision.actions)
        log.info("incident %s %s: %s %s", incident.id, incident.alertname, decision.outcome,
                 decision.detail or ", ".join(f"{a.type}({a.target})" for a in decision.actions))
        if ids:
            self._submit(incident.id, ids)
        return decision

    def note_decision(self, incident: Incident, decision: Decision) -> None:
        """What every decision (first action or later step) does to the shared state: open the
        breaker when it says so, count it in the metrics."""
        if decision.open_breaker:
            now = self.clock()
            self.ledger.set_state(BREAKER_KEY, ts(now))
            self.ledger.audit("breaker_open", {"detail": decision.detail}, now, incident_id=incident.id)
            self.metrics.breaker_open.set(1)
            log.error("circuit breaker opened: %s", decision.detail)
        if decision.reason == "repair_exhausted":  # no more repair: the node becomes an RMA candidate
            self.repair_rails.mark(incident.id, incident.labels.get("node", ""), decision.detail)
        self.metrics.observe_decision(decision)

    def repair_history(self, now: dt.datetime) -> list:
        """Repair attempts within the repeat-offender window, for the rails."""
        return self.ledger.repairs(now - dt.timedelta(seconds=self.config.repair.window))

    def world(self, now: dt.datetime) -> World:
        """What the rails read for a later step (escalation, restore, uncordon): fresh, not cached."""
        window = dt.timedelta(seconds=self.config.history_window)
        return World(self._cluster_view(), self.ledger.history(now - window), self.config.safety,
                     self.safety_state(now), now, self.config.safety.dry_run, repairs=self.repair_history(now),
                     repair=self.config.repair)

    def _guard(self, incident: Incident) -> CheckResult | None:
        rule = next((r for r in self.config.rules if r.matches(incident.labels)), None)
        if rule is None or rule.guard is None or incident.alert_status != "firing":
            return None
        query = guard_query(rule, incident)
        if self.prom is None or query is None:
            return CheckResult.of(None, "no Prometheus configured")
        return self.prom.check(query)

    def _submit(self, incident_id: int, chain: list[int]) -> None:
        self._submit_task(incident_id, self._run_chain, incident_id, chain)

    def _submit_task(self, key: object, fn: Callable, *args: object) -> None:
        with self._busy_lock:
            if key in self._busy:
                return
            self._busy.add(key)

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("task %s failed", key)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

        self._pool.submit(run)

    def run_action(self, incident_id: int, action_id: int) -> Outcome | None:
        return self.runner.run_action(incident_id, action_id)

    def _run_chain(self, incident_id: int, chain: list[int]) -> None:
        ok = True
        for action_id in chain:
            outcome = self.run_action(incident_id, action_id)
            if outcome is not None and outcome.state != "succeeded":
                ok = False
                if outcome.state == "failed" and not self._stop.is_set():
                    self.followup.on_failure(incident_id)  # the ladder goes on (replace) or stops and marks
                break
        if ok and not self._stop.is_set():
            self.followup.verify_and_escalate(incident_id)
