"""Assembles one service exporter (targets, discovery, prober, scheduler, metrics) without globals."""

from __future__ import annotations

from dataclasses import dataclass

from exporters.service.collector import ServiceMetrics
from exporters.service.config import Config
from exporters.service.discovery import KubeDiscovery, Targets, kube_client, static_targets
from exporters.service.probes import Prober
from exporters.service.scheduler import Scheduler


@dataclass
class ServiceExporter:
    config: Config
    targets: Targets
    prober: Prober
    scheduler: Scheduler
    metrics: ServiceMetrics
    discovery: KubeDiscovery | None = None

    def start(self) -> None:
        if self.discovery is not None:
            self.discovery.start()
        self.scheduler.start()

    def stop(self) -> None:
        if self.discovery is not None:
            self.discovery.stop()
        self.scheduler.stop()


def build(config: Config, *, api_client=None) -> ServiceExporter:
    targets = Targets()
    targets.replace("static", static_targets(config))
    prober = Prober(config.modules)
    metrics = ServiceMetrics()
    scheduler = Scheduler(targets, prober, interval=config.interval, concurrency=config.concurrency,
                          observe=metrics.observe, on_skip=metrics.skipped.inc, on_start=metrics.start_delay.observe)
    metrics.attach(scheduler, targets)
    exp = ServiceExporter(config, targets, prober, scheduler, metrics)
    if config.discovery:
        connect = (lambda: api_client) if api_client is not None else (lambda: kube_client(config.kubeconfig))
        exp.discovery = KubeDiscovery(list(config.discovery), targets, connect=connect,
                                      on_error=metrics.discovery_errors.inc)
        metrics.discovery_up(exp.discovery)
    return exp
