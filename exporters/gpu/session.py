"""NVML's lifecycle for the exporter: init without GPUs, bounded re-init after driver failures,
and the last-known inventory so a GPU that falls off the bus is reported, not forgotten."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporters.gpu.errors import ErrorCounts, Outcome, classify

log = logging.getLogger(__name__)


@dataclass
class Device:
    index: int
    uuid: str
    handle: Any
    info: dict[str, str]
    nvlinks: tuple[int, ...] = ()
    accessible: bool = True
    unsupported: set[tuple] = field(default_factory=set)  # calls not to repeat this generation
    nvlink: list = field(default_factory=list)  # last NVLink counter samples
    nvlink_at: float = float("-inf")


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlSession:
    """Init, re-init and inventory; only the collection thread calls `ensure` and `mark_down`."""

    def __init__(
        self,
        nvml: Any,
        *,
        errors: ErrorCounts,
        clock: Callable[[], float] = time.monotonic,
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.nvml = nvml
        self.errors = errors
        self._clock = clock
        self._backoff_min, self._backoff_max = backoff
        self._delay = self._backoff_min
        self._next_attempt = 0.0
        self._lock = threading.Lock()
        self._devices: dict[str, Device] = {}  # by uuid, survives re-init
        self._reported_down = False
        self.up = False
        self.generation = 0
        self.visible = 0
        self.nvml_version = "unknown"

    def devices(self) -> list[Device]:
        with self._lock:
            return sorted(self._devices.values(), key=lambda d: d.index)

    def ensure(self) -> bool:
        """Initialise NVML if it is down and the backoff allows; True when NVML is usable."""
        if self.up:
            return True
        if self._clock() < self._next_attempt:
            return False
        nvml = self.nvml
        try:
            nvml.nvmlInitWithFlags(nvml.NVML_INIT_FLAG_NO_GPUS)
            self._enumerate()
        except nvml.NVMLError as err:
            label, _ = classify(err)
            self.errors.inc(label)
            self._schedule_retry(f"NVML unavailable ({err}); serving self-metrics, retrying")
            return False
        self.up = True
        self.generation += 1
        self._delay = self._backoff_min
        self._reported_down = False
        log.info("NVML %s up with %d GPU(s)", self.nvml_version, self.visible)
        return True

    def mark_down(self, reason: str) -> None:
        """A driver-level failure: drop handles and re-initialise after a backoff."""
        if self.up:
            with contextlib.suppress(self.nvml.NVMLError):  # already unusable; re-init is the remedy
                self.nvml.nvmlShutdown()
        self.up = False
        self._reported_down = False
        self._schedule_retry(f"NVML failed ({reason}); re-initialising")

    def _schedule_retry(self, message: str) -> None:
        if not self._reported_down:  # one clear line per outage, not one per retry
            log.warning("%s (next attempt in %.0f s, backoff up to %.0f s)",
                        message, self._delay, self._backoff_max)
            self._reported_down = True
        self._next_attempt = self._clock() + self._delay
        self._delay = min(self._delay * 2, self._backoff_max)

    def _enumerate(self) -> None:
        nvml = self.nvml
        self.nvml_version = text(nvml.nvmlSystemGetNVMLVersion())
        driver = _optional(nvml, nvml.nvmlSystemGetDriverVersion)
        cuda = _optional(nvml, nvml.nvmlSystemGetCudaDriverVersion)
        cuda_text = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}" if cuda else ""
        count = nvml.nvmlDeviceGetCount()
        found: dict[str, Device] = {}
        lost_indexes: set[int] = set()
        for i in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                uuid = text(nvml.nvmlDeviceGetUUID(handle))
            except nvml.NVMLError as err:
                label, outcome = classify(err)
                self.errors.inc(label)
                if outcome is Outcome.DRIVER:
                    raise
                lost_indexes.add(i)
                continue
            found[uuid] = Device(
                index=i, uuid=uuid, handle=handle, nvlinks=_active_links(nvml, handle),
                info=_identity(nvml, handle, i, uuid, driver or "", cuda_text),
            )
        with self._lock:
            for uuid, old in self._devices.items():
                if uuid not in found:  # keep reporting what we knew, as inaccessible
                    old.accessible = False
                    old.handle = None
                    found[uuid] = old
            self._devices = found
        self.visible = count - len(lost_indexes)


def _optional(nvml: Any, fn: Callable, *args: Any) -> Any:
    try:
        return fn(*args)
    except nvml.NVMLError as err:
        if classify(err)[1] is Outcome.DRIVER:
            raise
        return None


def _identity(nvml: Any, handle: Any, index: int, uuid: str, driver: str, cuda: str) -> dict[str, str]:
    pci = _optional(nvml, nvml.nvmlDeviceGetPciInfo, handle)
    mig = _optional(nvml, nvml.nvmlDeviceGetMigMode, handle)
    mig_mode = "not_supported" if mig is None else ("enabled" if mig[0] else "disabled")
    return {
        "gpu": str(index),
        "uuid": uuid,
        "name": text(_optional(nvml, nvml.nvmlDeviceGetName, handle) or ""),
        "pci_bus_id": text(pci.busId) if pci is not None else "",
        "serial": text(_optional(nvml, nvml.nvmlDeviceGetSerial, handle) or ""),
        "vbios_version": text(_optional(nvml, nvml.nvmlDeviceGetVbiosVersion, handle) or ""),
        "driver_version": text(driver),
        "cuda_driver_version": cuda,
        "mig_mode": mig_mode,
    }


def _active_links(nvml: Any, handle: Any) -> tuple[int, ...]:
    """NVLinks are discovered once per init: probing all 36 on every scrape costs 36 calls a GPU."""
    links = []
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        state = _optional(nvml, nvml.nvmlDeviceGetNvLinkState, handle, link)
        if state is None:
            if link == 0:
                break  # no NVLink on this board
            continue
        if state == nvml.NVML_FEATURE_ENABLED:
            links.append(link)
    return tuple(links)
