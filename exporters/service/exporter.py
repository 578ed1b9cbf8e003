"""Assembles one service exporter (targets, discovery, prober, scheduler, metrics) without globals."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporters.service.collector import ServiceMetrics
from exporters.service.config import Config
from exporters.service.discovery import EndpointSliceWatch, Targets, static_targets
from exporters.service.probes import Prober
from exporters.service.scheduler import Scheduler


@dataclass
class ServiceExporter:
    config: Config
    targets: Targets
    prober: Prober
    scheduler: Scheduler
    metrics: ServiceMetrics
    watches: list[EndpointSliceWatch] = field(default_factory=list)

    def start(self) -> None:
        for w in self.watches:
            w.start()
        self.scheduler.start()

    def stop(self) -> None:
        for w in self.watches:
            w.stop()
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
        if api_client is None:
            from kubernetes import client
            from kubernetes import config as kconfig

            cfg = client.Configuration()
            if config.kubeconfig:
                kconfig.load_kube_config(config_file=config.kubeconfig, client_configuration=cfg)
            else:
                kconfig.load_incluster_config(client_configuration=cfg)
            api_client = client.ApiClient(cfg)
        exp.watches = [EndpointSliceWatch(d, targets, api_client, on_error=metrics.discovery_errors.inc)
                       for d in config.discovery]
    return exp
