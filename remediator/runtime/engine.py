"""The engine: takes incidents the ledger holds, decides them one at a time with the pure core,
and runs the resulting actions on a small worker pool. After a crash it resumes the actions the
ledger holds as planned or running; every action is idempotent, so each takes effect once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

from remediator.cluster.alert_source import AlertmanagerAlerts
from remediator.cluster.cache import ClusterCache
from remediator.cluster.executor import Outcome
from remediator.cluster.kube import Kube
from remediator.cluster.lease import AlwaysLeader, Leadership
from remediator.cluster.prom import PromChecker
from remediator.cluster.repair import RepairContext
from remediator.cluster.view import read_cluster_view
from remediator.config import Config
from remediator.domain import queue as waiting_queue
from remediator.domain.decide import continues_ladder, decide, guard_query, recheck
from remediator.domain.models import (
    CheckResult,
    ClusterView,
    Decision,
    Incident,
    PastAction,
    PlannedAction,
    SafetyState,
)
from remediator.domain.rails import Step, World
from remediator.domain.topology import Correlation, is_domain_incident
from remediator.runtime import pause as pausing
from remediator.runtime.approvals import Approvals
from remediator.runtime.domains import DomainIncidents
from remediator.runtime.followup import Followup, incident_of
from remediator.runtime.intake import IntakeGate
from remediator.runtime.metrics import Metrics
from remediator.runtime.notify import STALLED, Event, Notifier, decision_events
from remediator.runtime.reconcile import AlertReconciler, ReconcileLoop
from remediator.runtime.repairs import RepairRails
from remediator.runtime.runner import ClusterOps, Nudge, Runner
from remediator.store.ledger import DUE_BATCH, ActionRow, Ledger, LedgerUnavailable, from_ts, ts

log = logging.getLogger(__name__)
BREAKER_KEY = "breaker_opened_at"
LISTED_VIEW_AGE = 1.0  # seconds a LISTed cluster view (an engine without a cache) is shared
ESCALATIONS_KEY = "escalations_waiting"  # {incident id: next try}: escalation steps a rail holds back
PAUSE_KEY = pausing.PAUSE_KEY


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_safety_state(ledger: Ledger, now: dt.datetime | None = None) -> SafetyState:
    """Pause and breaker as the ledger holds them (an expired pause is no pause; the breaker's
    reset_after is handled by Engine.safety_state)."""
    p = pausing.read(ledger)
    return SafetyState(paused=p.paused and not p.expired(now or utcnow()),
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
        self.approvals = engine.approvals.read()
        self._view: ClusterView | None = None
        self._view_at = 0.0
        self.topology: Correlation | None = None  # the degraded domains, correlated once per tick

    def cluster(self) -> ClusterView:
        if self._view is None or time.monotonic() - self._view_at > 2.0:
            self._view, self._view_at = self.engine._cluster_view(fresh=True), time.monotonic()
        return self._view


class Engine:
    """Only the leader decides and acts: `leader` (a LeaseElector, or AlwaysLeader where Vigil acts
    on no cluster) is asked before each decision, and the runner and the follow-ups' cluster
    operations ask it before each claim and fence right before each change."""

    def __init__(self, config: Config, ledger: Ledger, kube: Kube | None, metrics: Metrics,
                 clock: Callable[[], dt.datetime] = utcnow, cache: ClusterCache | None = None,
                 leader: Leadership | None = None, intake: IntakeGate | None = None) -> None:
        self.config, self.ledger, self.kube, self.metrics, self.clock = config, ledger, kube, metrics, clock
        self.intake = intake if intake is not None else IntakeGate()  # the web layer marks webhooks in flight
        self.leader = leader if leader is not None else AlwaysLeader()
        self.cache = cache  # decisions read it (no API request); without one, each view is LISTed
        self._wake = threading.Event()
        self.prom = PromChecker(config.prometheus_url, config.prometheus_timeout) if config.prometheus_url else None
        self.rules = {r.name: r for r in (*config.rules, *config.domain_rules)}
        self.domains = DomainIncidents(ledger, config.topology, clock, notify=lambda e: self.notifier.notify(e))
        self.nudge = Nudge(self._wake)  # something a waiting incident waits for may have changed
        if cache is not None:
            cache.listen(self.nudge.set)  # a node returned: the head of the queue goes on at once
        self._seen: tuple = ()  # the cache's versions and the safety state at the last tick
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="vigil-action")
        self._thread = threading.Thread(target=self._run, name="vigil-engine", daemon=True)
        self._busy: set[object] = set()
        self._escalations: dict[int, tuple[dt.datetime, dt.datetime]] = {}  # incident -> (next try, held since)
        self._listed: tuple[ClusterView | None, float] = (None, 0.0)  # the last LISTed view (no cache), when
        self._stranded = threading.Event()  # a chain left planned by an unavailable ledger: resume it
        self._futures: set[futures.Future] = set()
        self._busy_lock = threading.Lock()
        self.notifier = Notifier(config.notifications, metrics.registry)
        self.approvals = Approvals(ledger, clock, self.notifier.notify, on_change=self.nudge.set)
        sleep = kube.retrier.sleep if kube is not None else time.sleep  # waits end when the process stops
        self.repair = RepairContext(kube, config.repair, self.prom, sleep=sleep,
                                    held=self._global_hold) if kube is not None else None
        self.repair_rails = RepairRails(ledger=ledger, settings=config.repair, ctx=self.repair,
                                        on_exhausted=metrics.repairs_exhausted.inc, clock=clock)
        self.runner = Runner(ledger, kube, metrics, clock, deadlines=config.action_deadlines,
                             notify=self.notifier.notify, leader=self.leader, repair=self.repair,
                             rails=self.repair_rails, held=self._held, nudge=self.nudge)
        ops = ClusterOps(kube, deadlines=config.action_deadlines, leader=self.leader,
                         repair=self.repair) if kube is not None else None
        self.followup = Followup(ledger=ledger, runner=self.runner, ops=ops,
                                 checker=self.prom, metrics=metrics, rules=self.rules, world=self.world,
                                 safety_state=self.safety_state, guard=self._guard, on_decision=self.note_decision,
                                 clock=clock, stopping=self._stop.is_set, sleep=self._stop.wait,
                                 notify=self.notifier.notify)
        self.reconcile = self._reconcile_loop(config, ledger, metrics, clock)

    def _reconcile_loop(self, config: Config, ledger: Ledger, metrics: Metrics,
                        clock: Callable[[], dt.datetime]) -> ReconcileLoop | None:
        """The firing set read back from Alertmanager every reconcile interval (alertmanager.url)."""
        am = config.alertmanager
        if not am.reconcile or not am.url:
            return None
        source = AlertmanagerAlerts((am.url,), am.receiver, am.timeout, am.bearer_token)
        reconciler = AlertReconciler(ledger, source, clock, metrics.reconciled)
        return ReconcileLoop(reconciler, config.queue.reconcile_interval, self.leader.is_leader, self.wake)

    def start(self) -> None:
        self.notifier.start()
        self._thread.start()
        if self.reconcile is not None:
            self.reconcile.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop deciding; running actions stop at their next safe point (a retry or drain pause),
        left `running` in the ledger and resumed after the restart. Waits at most `timeout` s."""
        self._stop.set()
        self._wake.set()
        if self.reconcile is not None:
            self.reconcile.stop()
        if self.kube is not None:
            self.kube.retrier.stopping.set()  # also ends the cache's watches
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._busy_lock:
            running = list(self._futures)
        futures.wait(running, timeout=max(deadline - time.monotonic(), 0.1))
        self.notifier.stop(timeout=max(deadline - time.monotonic(), 0.5))  # what is queued gets its chance

    def wake(self) -> None:
        if not self._wake.is_set():  # every webhook wakes the engine: the common case is already awake
            self._wake.set()

    # ---- safety state shared with the API -------------------------------------------------

    def safety_state(self, now: dt.datetime) -> SafetyState:
        opened = self.ledger.get_state(BREAKER_KEY)
        reset_after = self.config.safety.breaker.reset_after
        if opened and reset_after and (now - from_ts(opened)).total_seconds() >= reset_after:
            self.reset_breaker(now, by="timeout")
        if pausing.read(self.ledger).expired(now):
            self.set_paused(False, now, by="expiry")
        return read_safety_state(self.ledger, now)

    def reset_breaker(self, now: dt.datetime, by: str) -> bool:
        was_open = self.ledger.get_state(BREAKER_KEY) is not None
        self.ledger.set_state(BREAKER_KEY, None)
        if was_open:
            self.ledger.audit("breaker_reset", {"by": by}, now)
            log.warning("circuit breaker reset by %s", by)
        self.metrics.breaker_open.set(0)
        self.nudge.set()  # what waited for the breaker goes on now
        return was_open

    def set_paused(self, paused: bool, now: dt.datetime, by: str, *, reason: str = "",
                   until: dt.datetime | None = None) -> pausing.Pause:
        p = pausing.Pause(paused, reason, by, now, until) if paused else pausing.Pause()
        pausing.write(self.ledger, p)
        detail = {"by": by, "reason": reason, "until": p.as_dict()["until"]} if paused else {"by": by}
        self.ledger.audit("pause" if paused else "unpause", detail, now)
        self.metrics.paused.set(1 if paused else 0)
        log.warning("%s (%s)", p.describe(), f"set by {by}")
        if not paused:
            self.nudge.set()  # what waited for the pause goes on now
        return p

    def pause(self) -> pausing.Pause:
        return pausing.read(self.ledger)

    def _global_hold(self) -> str | None:
        """The global pause, read afresh (an expired one is none), or dry-run: why nothing may change now."""
        if self.config.safety.dry_run:
            return "dry-run is on"
        return self.pause().describe() if self.safety_state(self.clock()).paused else None

    def _held(self, incident: dict, row: ActionRow, kind: str = "first") -> Decision | None:
        """The admission, right before a planned action runs, against the world and the config as
        they are now, every rail again for the step's kind (`first` for a decided chain, or an
        escalation or on_failure step), one admission at a time: a plan stored before a restart
        (into a stricter config), one that waited behind busy workers, the next step of a chain
        after a long drain, escalation steps retried together. Dry-run is a refusal; anything else
        that stops it is the rail's own wait or refusal."""
        if self.config.safety.dry_run:
            return Decision("blocked", row.rule, reason="dry_run",
                            detail="dry-run is on; the plan was made before it was")
        if (why := self._global_hold()) is not None:
            return Decision("wait", row.rule, reason="paused", detail=why, not_before=self._recheck_at())
        rule = self.rules.get(row.rule)
        if rule is None or not incident:
            return None
        now = self.clock()
        inc = incident_of(incident)
        step = Step(kind, inc, rule, (PlannedAction(row.type, row.target, row.params),))
        world = self.world(now, fresh=False)
        decision = recheck(step, world)
        if decision is None and self._guarded(inc):  # the guard's query only once every other rail passed
            decision = recheck(step, dataclasses.replace(world, guard=self._guard(inc)))
        if decision is None:
            return None
        if decision.outcome in ("wait", "defer"):
            decision = dataclasses.replace(decision, outcome="wait", not_before=self._recheck_at(decision.not_before))
        self.note_decision(inc, decision)
        return decision

    def _recheck_at(self, not_before: dt.datetime | None = None) -> dt.datetime:
        """When a waiting incident is decided again at the latest (sooner on a nudge)."""
        at = self.clock() + dt.timedelta(seconds=self.config.queue.reconcile_interval)
        return min(at, not_before) if not_before is not None else at

    # ---- the loop -----------------------------------------------------------------------------

    def _resume(self) -> None:
        """On start and on each new term as leader: the actions the ledger holds as planned or running."""
        self._load_escalations()
        try:
            for incident_id, chain in self.ledger.incomplete_actions().items():
                log.info("resuming incident %d (%d actions)", incident_id, len(chain))
                self._submit(incident_id, chain)
        except Exception:
            log.exception("could not resume incomplete actions")

    def _run(self) -> None:
        was_leading = False
        while not self._stop.is_set():
            leading = self.leader.is_leader()
            self.metrics.leader.set(1 if leading else 0)
            if leading and (not was_leading or self._stranded.is_set()):
                self._stranded.clear()
                self._resume()  # a new term; or chains a ledger outage left planned (not failed)
            was_leading = leading
            timeout = 1.0
            try:
                if leading:
                    self._tick()
                wake_at = self.ledger.next_wake()
                if wake_at is not None:
                    timeout = min(timeout, max((wake_at - self.clock()).total_seconds(), 0.0))
            except Exception:  # the loop must survive a ledger hiccup (incidents fail alone, in _tick)
                log.exception("engine tick failed")
                self.metrics.incident_errors.labels("tick").inc()
            self._wake.wait(timeout)
            self._wake.clear()

    def _cluster_view(self, fresh: bool = False) -> ClusterView:
        """The cache's view; without a cache a LIST, shared for LISTED_VIEW_AGE seconds by the
        admissions and decisions that ask meanwhile (Vigil's own recent changes are counted from the
        ledger, not from the view); a LIST that fails is an unavailable view (unknown)."""
        if self.kube is None:
            return ClusterView(available=False)
        if self.cache is not None:
            return self.cache.view()  # unavailable while unsynced or stale: decisions defer
        view, at = self._listed
        if view is not None and not fresh and time.monotonic() - at < LISTED_VIEW_AGE:
            return view  # a tick's decisions LIST afresh; admissions share the latest
        try:
            view = read_cluster_view(self.kube)
        except Exception as exc:  # KubeError, or anything the client raised: defer, never fail
            log.warning("cluster view unavailable: %s: %s", type(exc).__name__, exc)
            return ClusterView(available=False)
        self._listed = (view, time.monotonic())
        return view

    def _changed(self) -> bool:
        """Whether something a waiting incident may wait for changed since the last tick: a nudge
        (an action finished, a resume, a breaker reset), the cluster cache (a node or pod changed),
        or the pause or breaker as the ledger holds them (changed by another replica)."""
        nudged = self.nudge.take()
        seen = (tuple(i.version for i in self.cache.informers) if self.cache is not None else (),
                self.ledger.get_state(PAUSE_KEY), self.ledger.get_state(BREAKER_KEY), self.approvals.version())
        moved, self._seen = seen != self._seen, seen
        return nudged or moved

    def _tick(self) -> None:
        changed = self._changed()
        self._retry_escalations(changed)
        due = self.ledger.due(self.clock(), on_unreadable=lambda i, exc: self.incident_failed(i, "read", exc),
                              wake_waiting=changed)
        ctx = _Context(self) if due else None
        if ctx is not None:
            ctx.topology = self._domains(ctx.cluster())
            due = self._in_queue_order(due, ctx)
        elif self.domains.due():
            self._domains(self._cluster_view())
        decided: list[tuple[Incident, Decision]] = []
        for incident in due:
            self.intake.yield_to_intake()
            if self._stop.is_set() or not self.leader.is_leader():
                break
            try:
                decided.append((incident, self._decide(incident, ctx)))
            except Exception as exc:  # this incident fails alone; the rest of the tick goes on
                self.incident_failed(incident.id, "decide", exc)
        self.intake.yield_to_intake()
        if decided and not self.leader.is_leader():  # the lease ran out while deciding: the next leader
            log.warning("leadership lost during a tick: %d decisions not stored", len(decided))  # decides afresh
            return
        self._record(decided)
        if len(due) >= DUE_BATCH:
            self._wake.set()  # a backlog: the next tick starts at once
        for inc in self.ledger.resolved_followups():
            if not self.leader.is_leader():
                return
            self._submit_task(f"after:{inc['id']}", self._after_resolve, inc,
                              on_error=lambda exc, i=inc["id"]: self._after_failed(i, exc))

    def _domains(self, cluster: ClusterView) -> Correlation | None:
        """Open and resolve domain incidents; the correlation this tick's decisions read."""
        corr = self.domains.correlate(cluster)
        if self.domains.sync(corr):
            self._wake.set()  # the new domain incidents are decided at the next tick
            corr = self.domains.correlate(cluster)  # with their ids: members join them at once
        return corr

    def _record(self, decided: list[tuple[Incident, Decision]]) -> None:
        """The tick's decisions in one short transaction (intake's commits wait on no more than it);
        if that fails, one by one, so a decision that cannot be stored fails only its incident."""
        if not decided:
            return
        now = self.clock()
        save_all = getattr(self.ledger, "save_decisions", None)
        ids: dict[int, list[int]] = {}
        try:
            if save_all is None:
                raise NotImplementedError
            ids = save_all([(i.id, d) for i, d in decided], now)
        except Exception:
            for incident, decision in decided:
                try:
                    ids[incident.id] = self.ledger.save_decision(incident.id, decision, now)
                except Exception as exc:
                    self.incident_failed(incident.id, "record", exc)
                    ids[incident.id] = []
        for incident, decision in decided:
            self._after_decision(incident, decision, ids.get(incident.id, []))

    def _after_decision(self, incident: Incident, decision: Decision, ids: list[int]) -> None:
        again = decision.outcome == "wait" and incident.waiting_since is not None  # logged when it began
        (log.debug if again else log.info)("incident %s %s: %s %s", incident.id, incident.alertname, decision.outcome,
                 decision.detail or ", ".join(f"{a.type}({a.target})" for a in decision.actions))
        if ids:
            self._submit(incident.id, ids)

    def _after_resolve(self, inc: dict) -> None:
        """Restores and uncordons after a resolve; a node returned may free a budget slot."""
        self.followup.after_resolve(inc)
        self.nudge.set()

    def _after_failed(self, incident_id: int, exc: BaseException) -> None:
        self.metrics.incident_errors.labels("after_resolve").inc()
        self.ledger.mark_after_resolve(incident_id, f"failed: {type(exc).__name__}: {exc}"[:1000], self.clock())

    def incident_failed(self, incident_id: int | None, stage: str, exc: BaseException) -> None:
        """Processing an incident raised: failed, with the exception in its record, audit and a metric.
        Not for a ledger that stayed unavailable past its retries (transient): the incident is left as
        it is (pending, or its chain planned or running) for the next tick or term to take up."""
        if isinstance(exc, LedgerUnavailable):
            log.warning("incident %s: the ledger is unavailable in %s (%s); left to retry, not failed",
                        incident_id, stage, exc)
            self.metrics.incident_errors.labels("ledger_unavailable").inc()
            self._stranded.set()  # its chain, if it has one, is taken up again at the next tick
            return
        log.error("incident %s failed in %s: %s: %s", incident_id, stage, type(exc).__name__, exc,
                  exc_info=(type(exc), exc, exc.__traceback__))
        self.metrics.incident_errors.labels(stage).inc()
        if incident_id is None:
            return
        try:
            self.ledger.fail_incident(incident_id, stage, exc, self.clock())
        except Exception:
            log.exception("could not mark incident %s failed", incident_id)

    def decide_and_record(self, incident: Incident, ctx: _Context | None = None) -> Decision:
        """Decide one incident and store the decision (the tick does the same for a batch)."""
        decision = self._decide(incident, ctx or _Context(self))
        self._after_decision(incident, decision, self.ledger.save_decision(incident.id, decision, self.clock()))
        return decision

    def _in_queue_order(self, due: list[Incident], ctx: _Context) -> list[Incident]:
        """The head of the queue first (severity, then the oldest alert, the pools in turn): a freed
        budget slot goes to it, since decisions are made one at a time in this order."""
        cluster, pools = ctx.cluster(), self.config.safety.budget.pools
        return waiting_queue.order(due, labels=lambda i: i.labels, key=lambda i: (i.starts_at, i.id or 0),
                                   pool=lambda i: waiting_queue.pool_of(i.labels, cluster, pools))

    def _decide(self, incident: Incident, ctx: _Context) -> Decision:
        now = self.clock()
        history, cluster, state = ctx.history, ctx.cluster(), ctx.state
        if self.kube is not None and not cluster.available:
            decision = Decision("wait", reason="cluster_unavailable", detail="Kubernetes did not answer",
                                trace=("the cluster view is unavailable; waiting for it",),
                                not_before=now + dt.timedelta(seconds=5))
        else:  # the guard (a PromQL query) only once every other rail passed: a paused queue asks nothing
            rules = self.config.domain_rules if is_domain_incident(incident) else self.config.rules

            def plan(guard: CheckResult | None) -> Decision:
                return decide(incident, rules, history, cluster, self.config.safety, state, now, guard=guard,
                              repairs=ctx.repairs, repair=self.config.repair, approvals=ctx.approvals,
                              topology=ctx.topology)
            decision = plan(None)
            if decision.outcome in ("act", "dry_run") and self._guarded(incident):
                decision = plan(self._guard(incident))
        if decision.outcome == "wait":
            decision = self._wait_or_hand_over(incident, decision, now)
        if decision.open_breaker:
            ctx.state = dataclasses.replace(ctx.state, breaker_open=True)
        self.note_decision(incident, decision)
        kept = {"act": "planned", "dry_run": "dry_run", "blocked": "blocked"}.get(decision.outcome)
        if kept:  # later decisions of this tick see this plan (budget, breaker, cooldown)
            ctx.history.extend(PastAction(incident.id, decision.rule or "", a.type, a.target, now, kept,
                                          workload=a.workload, amount=a.amount) for a in decision.actions)
        return decision

    def _wait_or_hand_over(self, incident: Incident, decision: Decision, now: dt.datetime) -> Decision:
        """A wait keeps the incident in the queue until the reconcile interval at the latest, or,
        once it has waited max_wait, hands it to people: it is never silently dropped."""
        since = incident.waiting_since or now
        waited = (now - since).total_seconds()
        if waited < self.config.queue.max_wait or decision.reason in ("approval", "window"):  # people or a clock
            return dataclasses.replace(decision, not_before=self._recheck_at(decision.not_before))
        detail = (f"waited {waited:.0f} s (max_wait {self.config.queue.max_wait:.0f} s) for {decision.reason}: "
                  f"{decision.detail}; handed to people, nothing was done")
        return dataclasses.replace(decision, outcome="handed_over", reason="max_wait", detail=detail,
                                   trace=(*decision.trace, f"handed over: {detail}"), not_before=None)

    def queue(self, now: dt.datetime | None = None) -> list[dict]:
        """What waits, in the order it goes on: position, pool, what it waits for, since when."""
        now = now or self.clock()
        items = self.ledger.waiting()
        cluster, pools = self._cluster_view(), self.config.safety.budget.pools
        ordered = waiting_queue.order(items, labels=lambda i: i["labels"], key=lambda i: (i["startsAt"], i["id"]),
                                      pool=lambda i: waiting_queue.pool_of(i["labels"], cluster, pools))
        out = []
        for position, i in enumerate(ordered, start=1):
            since = from_ts(i.get("waiting_since")) or from_ts(i["updated_at"]) or now
            labels = i["labels"]
            out.append({"position": position, "id": i["id"], "alertname": i["alertname"],
                        "target": labels.get("node") or labels.get("pod") or labels.get("service")
                        or labels.get("domain", ""),
                        "severity": labels.get("severity", ""), "pool": waiting_queue.pool_of(labels, cluster, pools),
                        "reason": i["reason"], "detail": i["detail"], "since": ts(since),
                        "waited_seconds": round(max((now - since).total_seconds(), 0.0), 1),
                        "next_check": i.get("not_before"), "startsAt": i["startsAt"]})
        return out

    def note_decision(self, incident: Incident, decision: Decision) -> None:
        """What every decision (first action or later step) does to the shared state: open the
        breaker when it says so, count it in the metrics. A wait decided again is not counted or
        notified again (a queue is decided every reconcile interval)."""
        self.approvals.ask(incident, decision)  # once per step: recorded, audited and notified
        if decision.outcome == "wait" and incident.waiting_since is not None and not decision.open_breaker:
            return
        if decision.open_breaker:
            now = self.clock()
            self.ledger.set_state(BREAKER_KEY, ts(now))
            self.ledger.audit("breaker_open", {"detail": decision.detail}, now, incident_id=incident.id)
            self.metrics.breaker_open.set(1)
            log.error("circuit breaker opened: %s", decision.detail)
        if decision.reason == "repair_exhausted":  # no more repair: the node becomes an RMA candidate
            self.repair_rails.mark(incident.id, incident.labels.get("node", ""), decision.detail)
        self.metrics.observe_decision(decision)
        for event in decision_events(incident, decision):  # blocked (or dry-run) first actions and later steps
            self.notifier.notify(event)

    def repair_history(self, now: dt.datetime) -> list:
        """Repair attempts within the repeat-offender window, for the rails."""
        return self.ledger.repairs(now - dt.timedelta(seconds=self.config.repair.window))

    def world(self, now: dt.datetime, fresh: bool = True) -> World:
        """What the rails read for a later step (escalation, restore, uncordon): fresh, not cached
        (`fresh=False`, an admission: without a cache, the latest LIST, at most a second old)."""
        window = dt.timedelta(seconds=self.config.history_window)
        cluster = self._cluster_view(fresh=fresh)
        return World(cluster, self.ledger.history(now - window), self.config.safety,
                     self.safety_state(now), now, self.config.safety.dry_run, repairs=self.repair_history(now),
                     repair=self.config.repair, needs_cluster=self.kube is not None, approvals=self.approvals.read(),
                     topology=self.domains.correlate(cluster))

    def _guarded(self, incident: Incident) -> bool:
        rules = self.config.domain_rules if is_domain_incident(incident) else self.config.rules
        rule = next((r for r in rules if r.matches(incident.labels)), None)
        return rule is not None and rule.guard is not None

    def _guard(self, incident: Incident) -> CheckResult | None:
        rules = self.config.domain_rules if is_domain_incident(incident) else self.config.rules
        rule = next((r for r in rules if r.matches(incident.labels)), None)
        if rule is None or rule.guard is None or incident.alert_status != "firing":
            return None
        query = guard_query(rule, incident)
        if self.prom is None or query is None:
            return CheckResult.of(None, "no Prometheus configured")
        return self.prom.check(query)

    def _submit(self, incident_id: int, chain: list[int]) -> None:
        self._submit_task(incident_id, self._run_chain, incident_id, chain,
                          on_error=lambda exc: self.incident_failed(incident_id, "act", exc))

    def _submit_task(self, key: object, fn: Callable, *args: object,
                     on_error: Callable[[BaseException], None] | None = None) -> None:
        with self._busy_lock:
            if key in self._busy:
                return
            self._busy.add(key)

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:
                log.exception("task %s failed", key)
                if on_error is not None:
                    try:
                        on_error(exc)
                    except Exception:
                        log.exception("task %s: recording the failure failed", key)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

        future = self._pool.submit(run)
        with self._busy_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: futures.Future) -> None:
        with self._busy_lock:
            self._futures.discard(future)

    def run_action(self, incident_id: int, action_id: int) -> Outcome | None:
        return self.runner.run_action(incident_id, action_id)

    def _run_chain(self, incident_id: int, chain: list[int]) -> None:
        """The chain's actions in order, each admitted right before it runs; a step held back ends
        the run (the incident waits in the queue), a step that failed on the node goes on along
        the rule's on_failure ladder, and a chain that ran to its end is verified. Once it ends, for
        good or not, the Alertmanager silences its repairs set are expired: none outlives it."""
        ok = True
        for action_id in chain:
            if self._stop.is_set():
                return  # the rest stays planned: resumed after the restart
            outcome = self.run_action(incident_id, action_id)
            if outcome is not None and outcome.state in ("waiting", "interrupted"):
                return  # it goes on later, silences and all
            if outcome is not None and outcome.state != "succeeded":
                ok = False
                if outcome.state == "failed" and continues_ladder(outcome.reason) and not self._stop.is_set():
                    self.followup.on_failure(incident_id)  # the ladder goes on (replace) or stops and marks
                break
        if ok and not self._stop.is_set() and self.leader.is_leader():
            self._verify_and_escalate(incident_id)
            self.domains.hand_over(incident_id)  # a domain incident's ladder ends with people
        if not self._stop.is_set():
            self.repair_rails.expire(incident_id)

    # ---- escalation steps held back by a rail that can clear --------------------------------------

    def _verify_and_escalate(self, incident_id: int) -> None:
        """Verify and escalate; a step a rail holds back (paused, budget, ...) is tried again at the
        next reconcile interval, or sooner on a change, from where the ladder stands (durable: the
        waiting escalations are ledger state, resumed by the next leader), and handed to people
        once it has waited max_wait."""
        with self._busy_lock:
            held = self._escalations.pop(incident_id, None)
        now = self.clock()
        since = held[1] if held else now
        if held and (now - since).total_seconds() >= self.config.queue.max_wait:
            self._hand_over_escalation(incident_id, since)
        elif self.followup.verify_and_escalate(incident_id, held is not None):
            with self._busy_lock:
                self._escalations[incident_id] = (self._recheck_at(), since)
        self._save_escalations()

    def _hand_over_escalation(self, incident_id: int, since: dt.datetime) -> None:
        detail = (f"an escalation step held back since {ts(since)} (max_wait {self.config.queue.max_wait:.0f} s); "
                  "handed to people")
        self.ledger.audit("escalation_handed_over", {"since": ts(since), "detail": detail}, self.clock(),
                          incident_id=incident_id)
        inc = self.ledger.get_incident(incident_id) or {}
        labels = inc.get("labels") or {}
        self.notifier.notify(Event("gave_up", incident_id, "none", "handed_over", labels.get("node", ""),
                                   f"{inc.get('alertname', '?')}: an escalation waited too long, handed to people",
                                   detail, alertname=STALLED))
        log.warning("incident %d: %s", incident_id, detail)

    def _save_escalations(self) -> None:
        with self._busy_lock:
            held = {str(i): [ts(t), ts(s)] for i, (t, s) in self._escalations.items()}
        try:
            if held or self.ledger.get_state(ESCALATIONS_KEY) is not None:
                self.ledger.set_state(ESCALATIONS_KEY, json.dumps(held, sort_keys=True) if held else None)
        except Exception as exc:  # kept in memory; written again with the next change
            log.warning("could not store the waiting escalations: %s", exc)

    def _load_escalations(self) -> None:
        """The held escalations as the ledger holds them (what this replica remembered from an
        earlier term is replaced: another leader may have finished them meanwhile)."""
        try:
            held = json.loads(self.ledger.get_state(ESCALATIONS_KEY) or "{}")
            loaded = {int(i): (from_ts(v[0]) or self.clock(), from_ts(v[1]) or self.clock())
                      for i, v in held.items()}
        except Exception as exc:
            log.warning("could not read the waiting escalations: %s", exc)
            return
        with self._busy_lock:
            self._escalations = loaded

    def _retry_escalations(self, changed: bool) -> None:
        now = self.clock()
        with self._busy_lock:
            due = [i for i, (t, _) in self._escalations.items() if changed or t <= now]
        for incident_id in due:
            self._submit_task(f"escalate:{incident_id}", self._verify_and_escalate, incident_id,
                              on_error=lambda exc, i=incident_id: self.incident_failed(i, "escalate", exc))
