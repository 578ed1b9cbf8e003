"""The prometheus_client Collector: turns a collection snapshot, the XID counts and the
exporter's own state into samples, grouped as metric families on each scrape."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters import __version__
from exporters.gpu.device import Sample
from exporters.gpu.errors import ErrorCounts
from exporters.gpu.exposition import Renderer
from exporters.gpu.metrics import SPECS
from exporters.gpu.sampler import Sampler, Snapshot
from exporters.gpu.session import NvmlSession
from exporters.gpu.xid import XidCounts

# Set by the HTTP handler from X-Prometheus-Scrape-Timeout-Seconds for the scrape in progress.
scrape_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar("scrape_timeout", default=None)

_INFO_LABELS = SPECS["gpu_info"].labels


class SampleSource(Protocol):
    """An optional signal with families of its own (no name shared with another source)."""

    def samples(self) -> list[Sample]: ...


def _families(samples: Iterable[Sample]) -> Iterator[Metric]:
    fams: dict[str, Metric] = {}
    for s in samples:
        fam = fams.get(s.name)
        if fam is None:
            spec = SPECS[s.name]
            cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            fam = fams[s.name] = cls(s.name, spec.help, labels=spec.labels)
        fam.add_metric(s.labels, s.value)
    return iter(fams.values())


def _ml_py_version() -> str:
    try:
        return metadata.version("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        return "unknown"


class GpuCollector:
    def __init__(self, sampler: Sampler, session: NvmlSession, xids: XidCounts,
                 errors: ErrorCounts, *, timeout: float = 5.0, pushes: ErrorCounts | None = None,
                 extras: tuple[SampleSource, ...] = ()) -> None:
        self.sampler, self.session, self.xids, self.errors = sampler, session, xids, errors
        self.pushes = pushes  # fast-path push results, when the fast path is on
        self.extras = extras  # optional signals (kernel log, pod attribution), each its own families
        self.timeout = timeout
        self._ml_py = _ml_py_version()

    def describe(self) -> list[Metric]:
        return []  # no NVML call at register() time

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        head, per_gpu, (xids, _), own = self._blocks(snap)
        extra = [s for source in self.extras for s in source.samples()]
        return _families([*head, *per_gpu, *(snap.nvlink if snap else []), *xids, *extra, *own])

    def render(self, renderer: Renderer) -> str:
        """The exposition of one scrape; the snapshot's block is shared by scrapes that share it."""
        snap = self._snapshot()
        head, per_gpu, (xids, version), own = self._blocks(snap)
        body = ""
        if snap is not None:
            body = renderer.cached_block("gpu", snap, per_gpu)
            body += renderer.cached_block("nvlink", snap.nvlink_version, snap.nvlink)
        extra = "".join(renderer.block(source.samples()) for source in self.extras)
        return renderer.block(head) + body + renderer.cached_block("xid", version, xids) + extra + renderer.block(own)

    def _snapshot(self) -> Snapshot | None:
        bound = scrape_timeout.get()
        return self.sampler.sample(self.timeout if bound is None else min(bound, self.timeout))

    def _blocks(self, snap: Snapshot | None) -> tuple[list[Sample], list[Sample], tuple[list[Sample], object],
                                                      list[Sample]]:
        """Runs of families, no name in two of them: identity, per-GPU values, XIDs, self
        (NVLink counters, a fifth, come with the snapshot)."""
        devices = self.session.devices()
        head = [Sample("gpu_info", tuple(d.info[k] for k in _INFO_LABELS), 1) for d in devices]
        if snap is not None:
            head += [Sample("gpu_accessible", (str(d.index), d.uuid), 1 if snap.accessible[d.uuid] else 0)
                     for d in devices if d.uuid in snap.accessible]
        x = self.xids.snapshot()
        xids = [Sample("gpu_xid_errors_total", k, v) for k, v in sorted(x.counts.items())]
        xids += [Sample("gpu_xid_last_timestamp_seconds", k, v) for k, v in sorted(x.last.items())]
        xids += [Sample("gpu_xid_follow_on_errors_total", k, v) for k, v in sorted(x.follow_on.items())]
        version = x.version
        up = self.session.up
        own = [
            Sample("gpu_exporter_nvml_up", (), 1 if up else 0),
            Sample("gpu_exporter_devices", (), self.session.visible if up else 0),
            Sample("gpu_exporter_collect_duration_seconds", (), self.sampler.last_duration),
            Sample("gpu_exporter_last_collect_success", (), 1 if snap is not None and self.sampler.last_success else 0),
        ]
        own += [Sample("gpu_exporter_nvml_errors_total", (label,), n)
                for label, n in sorted(self.errors.snapshot().items())]
        if self.pushes is not None:
            own += [Sample("gpu_exporter_alert_pushes_total", (label,), n)
                    for label, n in sorted(self.pushes.snapshot().items())]
        own.append(Sample("gpu_exporter_build_info", (__version__, self.session.nvml_version, self._ml_py), 1))
        return head, (snap.samples if snap is not None else []), (xids, version), own
