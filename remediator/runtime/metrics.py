"""The remediator's own metrics, in a registry built per app (no import-time globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from remediator import __version__
from remediator.domain.actions import ACTIONS
from remediator.domain.models import Decision

INCIDENT_STATUSES = ("pending", "deferred", "waiting", "acting", "succeeded", "failed", "blocked", "dry_run",
                     "cancelled", "ignored", "resolved", "handed_over", "joined")
DELAY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class _IncidentCollector:
    """Incidents by status, read from the ledger at scrape time (it survives restarts)."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("vigil_incidents", "Incidents in the ledger by status.", labels=["status"])
        try:
            counts = self._counts()
        except Exception:  # the ledger being unreachable shows in /readyz, not as a scrape error
            return
        for status in INCIDENT_STATUSES:
            fam.add_metric([status], counts.get(status, 0))
        yield fam


class _QueueCollector:
    """The waiting queue, read from the ledger at scrape time: how many wait, for what, and how
    long the oldest has waited (what VigilRemediationQueueStuck alerts on)."""

    def __init__(self, queue: Callable[[], list[dict]]) -> None:
        self._queue = queue

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            items = self._queue()
        except Exception:  # the ledger being unreachable shows in /readyz, not as a scrape error
            return
        waiting = GaugeMetricFamily("vigil_incidents_waiting", "Incidents waiting in the queue, by what they wait "
                                    "for (a rail that can clear: budget, paused, breaker_open, ...).",
                                    labels=["reason"])
        counts: dict[str, int] = {}
        for i in items:
            counts[i["reason"]] = counts.get(i["reason"], 0) + 1
        for reason in sorted(set(counts) | {"budget", "paused", "breaker_open"}):
            waiting.add_metric([reason], counts.get(reason, 0))
        yield waiting
        stuck = [i["waited_seconds"] for i in items if i["reason"] not in BY_DESIGN]
        yield GaugeMetricFamily("vigil_oldest_waiting_seconds", "Seconds the longest-waiting incident has waited "
                                "(0 when nothing waits); waits for an approval or a maintenance window are by "
                                "design and not counted.", value=max(stuck, default=0.0))


BY_DESIGN = ("approval", "window")  # waits the policy asked for: they are not a queue stuck


class _Count:
    def __init__(self, name: str, doc: str, count: Callable[[], int]) -> None:
        self._name, self._doc, self._count = name, doc, count

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, value=self._count())


class _CacheSizes:
    def __init__(self, sizes: Callable[[], dict[str, int]]) -> None:
        self._sizes = sizes

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("vigil_cluster_cache_objects", "Objects held by the cluster cache, by resource.",
                                labels=["resource"])
        for resource, n in self._sizes().items():
            fam.add_metric([resource], n)
        yield fam


class Metrics:
    def __init__(self, incident_counts: Callable[[], dict[str, int]] | None = None) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.notifications = Counter("vigil_notifications_total", "Alerts received in webhooks, by alert status.",
                                     ["status"], registry=r)
        self.webhook_requests = Counter("vigil_webhook_requests_total", "Webhook requests by HTTP status code.",
                                        ["code"], registry=r)
        self.dedupe_hits = Counter("vigil_dedupe_hits_total",
                                   "Notifications of incidents already in the ledger (repeats, retries, HA peers).",
                                   registry=r)
        self.truncated = Counter("vigil_truncated_alerts_total",
                                 "Alerts Alertmanager left out of webhooks (max_alerts); Vigil never saw them.",
                                 registry=r)
        self.incident_errors = Counter("vigil_incident_errors_total",
                                       "Incidents whose processing raised (marked failed, reason internal_error), "
                                       "by stage.", ["stage"], registry=r)
        self.decisions = Counter("vigil_decisions_total", "Decisions by outcome.", ["outcome"], registry=r)
        self.blocked = Counter("vigil_blocked_total", "Incidents or actions held back (they wait) or refused, "
                               "by reason; a wait counts once, however often it is decided again.", ["reason"],
                               registry=r)
        self.actions = Counter("vigil_actions_total",
                               "Actions by type and result (dry_run: would have acted).", ["action", "result"],
                               registry=r)
        self.delay = Histogram("vigil_action_delay_seconds",
                               "Seconds from the alert's startsAt to the action taking effect.",
                               ["action"], buckets=DELAY_BUCKETS, registry=r)
        self.verifications = Counter("vigil_verifications_total",
                                     "Post-action verifications by the last action and result: verified, failed, "
                                     "unverifiable (the check stayed unknown: nothing escalated, left to people).",
                                     ["action", "result"], registry=r)
        self.reconciled = Counter("vigil_reconciled_alerts_total",
                                  "Incidents the reconcile with Alertmanager's API changed: recorded (firing, no "
                                  "webhook brought them) or resolved (Alertmanager no longer has them).",
                                  ["result"], registry=r)
        for result in ("recorded", "resolved"):
            self.reconciled.labels(result)
        self.escalations = Counter("vigil_escalations_total", "Escalation steps taken, by action.", ["action"],
                                   registry=r)
        self.repairs_exhausted = Counter("vigil_repairs_exhausted_total",
                                         "Repairs refused because the node or GPU was repaired too often "
                                         "(it is marked vigil.io/rma-candidate=true).", registry=r)
        self.breaker_open = Gauge("vigil_breaker_open", "1 while the circuit breaker is open.", registry=r)
        self.paused = Gauge("vigil_paused", "1 while remediation is paused globally.", registry=r)
        self.leader = Gauge("vigil_leader", "1 while this replica holds the leader lease (only the leader acts).",
                            registry=r)
        self.budget_in_use = Gauge("vigil_disruption_budget_nodes_in_use",
                                   "Nodes out of service at the last budget check (with that plan).", registry=r)
        self.budget_allowed = Gauge("vigil_disruption_budget_nodes_allowed",
                                    "Nodes the disruption budget allows out of service at once.", registry=r)
        self.pool_budget = Gauge("vigil_disruption_budget_pool_nodes",
                                 "Per-pool budget at the last check: unavailable (with that plan), allowed, total.",
                                 ["pool", "state"], registry=r)
        Gauge("vigil_build_info", "Remediator build; always 1.", ["version"], registry=r).labels(__version__).set(1)
        for outcome in ("act", "dry_run", "wait", "blocked", "defer", "no_match", "resolved", "handed_over",
                        "joined"):
            self.decisions.labels(outcome)
        for status in ("firing", "resolved"):
            self.notifications.labels(status)
        for action in ACTIONS:  # at 0 from the start, so increase() sees the first action
            for result in ("succeeded", "failed", "blocked", "dry_run"):
                self.actions.labels(action, result)
            for result in ("verified", "failed", "unverifiable"):
                self.verifications.labels(action, result)
        if incident_counts is not None:
            r.register(_IncidentCollector(incident_counts))

    def watch_queue(self, queue: Callable[[], list[dict]]) -> None:
        """The waiting queue's size by reason and its oldest wait, read at scrape time."""
        self.registry.register(_QueueCollector(queue))

    def count_kube_requests(self, count: Callable[[], int]) -> None:
        """Kubernetes API requests the actions and reads made (the cache's watches not included)."""
        self.registry.register(_Count("vigil_kubernetes_requests", "Kubernetes API requests made by actions "
                                      "and reads (not the cluster cache's list and watch).", count))

    def watch_cache(self, staleness: Callable[[], float], sizes: Callable[[], dict[str, int]]) -> None:
        """The cluster cache's staleness and size, read at scrape time."""
        g = Gauge("vigil_cluster_cache_staleness_seconds",
                  "Seconds since the cluster cache last heard from the API server (+Inf before its first sync).",
                  registry=self.registry)
        g.set_function(staleness)
        self.registry.register(_CacheSizes(sizes))

    def observe_decision(self, d: Decision) -> None:
        self.decisions.labels(d.outcome).inc()
        if d.outcome in ("blocked", "wait"):  # held back (waits) or refused, by the rail's reason
            self.blocked.labels(d.reason).inc()
        if d.outcome == "dry_run":
            for a in d.actions:
                self.actions.labels(a.type, "dry_run").inc()
        if d.budget is not None:
            self.budget_in_use.set(d.budget.nodes_out)
            self.budget_allowed.set(d.budget.nodes_allowed)
            for pool, unavailable, allowed, total in d.budget.pools:
                self.pool_budget.labels(pool, "unavailable").set(unavailable)
                self.pool_budget.labels(pool, "allowed").set(allowed)
                self.pool_budget.labels(pool, "total").set(total)

    def observe_action(self, action: str, result: str, delay: float | None, reason: str = "") -> None:
        self.actions.labels(action, result).inc()
        if result == "blocked":
            self.blocked.labels(reason or "action").inc()
        if result == "succeeded" and delay is not None:
            self.delay.labels(action).observe(max(delay, 0.0))
