"""Assembles one GPU exporter (backend, session, sampler, XID thread, registry) without globals,
so `main()` and each test build their own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from exporters.gpu.attribution import Attribution
from exporters.gpu.collector import GpuCollector
from exporters.gpu.errors import ErrorCounts
from exporters.gpu.exposition import Renderer
from exporters.gpu.fastpath import AlertPusher, PushConfig
from exporters.gpu.faults import BOOT_ID_PATH, FaultState, StateFile, read_boot_id
from exporters.gpu.kernel_log import KernelLogConfig, KernelLogReader, SxidCounts
from exporters.gpu.metrics import DEFAULT_XIDS
from exporters.gpu.sampler import Sampler
from exporters.gpu.session import NvmlSession
from exporters.gpu.simulated import SimulatedNVML
from exporters.gpu.simulated_kmsg import SimulatedKernelLog
from exporters.gpu.xid import XidCounts, XidWatcher


@dataclass(frozen=True)
class PodResourcesConfig:
    socket: str  # the kubelet's pod-resources socket
    interval: float = 10.0  # seconds between reads; scrapes never call the kubelet
    timeout: float = 5.0


@dataclass(frozen=True)
class FaultStateConfig:
    directory: str | None = None  # where faults.json lives; None: pending faults are kept in memory only
    boot_id_path: str = BOOT_ID_PATH


@dataclass
class GpuExporter:
    nvml: Any
    session: NvmlSession
    sampler: Sampler
    xids: XidCounts
    watcher: XidWatcher
    collector: GpuCollector
    registry: CollectorRegistry  # the GPU collector, for library consumers and tests
    process: CollectorRegistry  # process_* metrics of the exporter itself
    errors: ErrorCounts
    faults: FaultState
    collect_timeout: float = 5.0
    renderer: Renderer = field(default_factory=Renderer)
    pusher: AlertPusher | None = None
    kernel_log: KernelLogReader | None = None
    attribution: Attribution | None = None

    def exposition(self) -> bytes:
        """What /metrics serves: the GPU collector's fast path, then the process metrics."""
        return self.collector.render(self.renderer).encode() + generate_latest(self.process)

    @property
    def simulated(self) -> SimulatedNVML | None:
        return self.nvml if isinstance(self.nvml, SimulatedNVML) else None

    def start(self) -> None:
        self.sampler.sample(timeout=self.collect_timeout)  # first init, off the scrape path
        self.watcher.start()
        for part in (self.kernel_log, self.attribution):
            if part is not None:
                part.start()
        if self.pusher is not None:
            self.pusher.start()

    def stop(self) -> None:
        """Stop the background threads (they are daemons; tests stop them to free their files)."""
        for part in (self.watcher, self.kernel_log, self.attribution, self.pusher):
            if part is not None:
                part.stop()


def load_backend(name: str, simulated_gpus: int = 8, kernel_log: str | None = None,
                 fabric: tuple[str, int] | None = None) -> Any:
    """`kernel_log`: for the simulated backend, the file its injected faults are logged to; `fabric`:
    its NVLink partition (clusterUuid, cliqueId), None for none."""
    if name == "simulated":
        return SimulatedNVML(simulated_gpus, kernel_log=SimulatedKernelLog(kernel_log) if kernel_log else None,
                             fabric=fabric)
    if name == "nvml":
        import pynvml  # nvidia-ml-py; loads libnvidia-ml.so.1 only at nvmlInit

        return pynvml
    raise ValueError(f"unknown backend {name!r}")


def _attribution(cfg: PodResourcesConfig, session: NvmlSession) -> Attribution:
    """Imported here: grpc and protobuf are loaded only when pod attribution is on."""
    from exporters.gpu.podresources.client import PodResourcesClient

    return Attribution(PodResourcesClient(cfg.socket, timeout=cfg.timeout), session, interval=cfg.interval)


def build(nvml: Any, *, collect_timeout: float = 5.0, min_interval: float = 0.0, nvlink_interval: float = 10.0,
          xid_precreate: tuple[int, ...] = DEFAULT_XIDS,
          backoff: tuple[float, float] = (1.0, 30.0), xid_wait_ms: int = 1000,
          push: PushConfig | None = None, kernel_log: KernelLogConfig | None = None,
          pod_resources: PodResourcesConfig | None = None,
          fault_state: FaultStateConfig = FaultStateConfig()) -> GpuExporter:
    errors = ErrorCounts()
    session = NvmlSession(nvml, errors=errors, backoff=backoff)
    sampler = Sampler(session, errors, min_interval=min_interval, nvlink_interval=nvlink_interval)
    xids = XidCounts(xid_precreate)
    faults = latched_faults(nvml, session, sampler, fault_state)
    watcher = XidWatcher(session, xids, errors, wait_ms=xid_wait_ms, backoff=backoff,
                         request_init=lambda: sampler.sample(collect_timeout), listeners=(faults.on_xid,))
    pushes = ErrorCounts(("dropped", "failure", "success"), "failure") if push else None
    reader = (KernelLogReader(kernel_log, session=session, xids=xids, sxids=SxidCounts(), listeners=watcher.listeners)
              if kernel_log is not None else None)
    attribution = _attribution(pod_resources, session) if pod_resources is not None else None
    extras = tuple(x for x in (reader, attribution, faults) if x is not None)
    collector = GpuCollector(sampler, session, xids, errors, timeout=collect_timeout, pushes=pushes, extras=extras)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    process = CollectorRegistry()
    ProcessCollector(registry=process)
    exp = GpuExporter(nvml, session, sampler, xids, watcher, collector, registry, process, errors, faults,
                      collect_timeout, kernel_log=reader, attribution=attribution)
    if push is not None:
        exp.pusher = AlertPusher(push, sampler, count=pushes.inc,
                                 pods=attribution.pods_of if attribution is not None else None,
                                 pending=faults.pending)
        watcher.listeners.append(exp.pusher.on_xid)
    return exp


def latched_faults(nvml: Any, session: NvmlSession, sampler: Sampler, config: FaultStateConfig) -> FaultState:
    """The pending faults, loaded from the state file, cleared by what each collection sees. The
    simulated backend gets its latched faults back (as a GPU that was not reset still has them) and
    owns the boot ID, so that its reboot clears them."""
    store = StateFile(config.directory) if config.directory else None
    sim = nvml if isinstance(nvml, SimulatedNVML) else None
    if sim is not None:
        sim.boot_id = read_boot_id(config.boot_id_path) or sim.boot_id
        faults = FaultState(store, boot_id=lambda: sim.boot_id)
        sim.restore(faults.pending())
    else:
        boot = read_boot_id(config.boot_id_path)  # a real reboot restarts the exporter: read once
        faults = FaultState(store, boot_id=lambda: boot)
    sampler.observers.append(lambda snap: faults.observe(snap, {d.uuid: str(d.index) for d in session.devices()}))
    return faults
