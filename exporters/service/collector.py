"""The service exporter's metrics. Per endpoint: probe_success, probe_duration_seconds,
probe_http_status_code and service_endpoint_ready, from the latest results (a vanished endpoint's
series vanish). Per service and zone: histograms of probe duration and time to first token and a
failure counter, which the SLO recording rules aggregate; per-pod histograms would multiply the
series by the endpoints for nothing the rules use."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from exporters import __version__
from exporters.service.discovery import LABEL_NAMES, KubeDiscovery, Target, Targets
from exporters.service.probes import REASONS, Result
from exporters.service.scheduler import Scheduler

AGG = ("namespace", "service", "zone", "module")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _Latest:
    def __init__(self, scheduler: Scheduler, targets: Targets) -> None:
        self.scheduler, self.targets = scheduler, targets

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = [*LABEL_NAMES, "module"]
        success = GaugeMetricFamily("probe_success", "1 if the endpoint's last probe succeeded.", labels=labels)
        duration = GaugeMetricFamily("probe_duration_seconds", "Duration of the endpoint's last probe.", labels=labels)
        status = GaugeMetricFamily("probe_http_status_code", "HTTP status of the endpoint's last probe (0: none).",
                                   labels=labels)
        ready = GaugeMetricFamily("service_endpoint_ready", "1 if the EndpointSlice marks the endpoint ready.",
                                  labels=labels)
        for target, result in sorted(self.scheduler.snapshot(), key=lambda tr: tr[0].key):
            values = [*target.label_values(), target.module]
            success.add_metric(values, 1 if result.success else 0)
            duration.add_metric(values, result.duration)
            if self.scheduler.prober.modules[target.module].prober != "tcp":
                status.add_metric(values, result.status_code)
            ready.add_metric(values, 1 if target.ready else 0)
        targets = GaugeMetricFamily("service_exporter_targets", "Targets probed, by where they come from.",
                                    labels=["source"])
        for source, n in sorted(self.targets.count_by_source().items()):
            targets.add_metric([source], n)
        yield from (success, duration, status, ready, targets)


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.duration = Histogram("service_probe_duration_seconds", "Probe durations per service and zone.",
                                  AGG, buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram("service_probe_time_to_first_token_seconds",
                              "Time to the first streamed token of inference probes, per service and zone.",
                              AGG, buckets=TTFT_BUCKETS, registry=r)
        self.failures = Counter("service_probe_failures_total", "Failed probes by reason, per service and zone.",
                                [*AGG, "reason"], registry=r)
        self.start_delay = Histogram("service_exporter_probe_start_delay_seconds",
                                     "How late probes start against their schedule.",
                                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=r)
        self.skipped = Counter("service_exporter_probes_skipped_total",
                               "Probes skipped because the previous probe of the target was still running.",
                               registry=r)
        self.discovery_errors = Counter("service_exporter_discovery_errors_total",
                                        "Kubernetes discovery list/watch errors.", registry=r)
        Gauge("service_exporter_build_info", "Exporter build; always 1.", ["version"], registry=r) \
            .labels(__version__).set(1)

    def discovery_up(self, discovery: KubeDiscovery) -> None:
        """service_exporter_discovery_up, exported only when discovery is configured."""
        Gauge("service_exporter_discovery_up", "1 if Kubernetes discovery works: the client is made and every "
              "EndpointSlice watch's last list succeeded.", registry=self.registry) \
            .set_function(lambda: 1 if discovery.up else 0)

    def observe(self, target: Target, result: Result) -> None:
        agg = (target.labels.get("namespace", ""), target.labels.get("service", ""), target.labels.get("zone", ""),
               target.module)
        self.duration.labels(*agg).observe(result.duration)
        if result.ttft is not None:
            self.ttft.labels(*agg).observe(result.ttft)
        if not result.success:
            self.failures.labels(*agg, result.reason if result.reason in REASONS else "connect").inc()

    def attach(self, scheduler: Scheduler, targets: Targets) -> None:
        self.registry.register(_Latest(scheduler, targets))
