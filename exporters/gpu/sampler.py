"""One NVML collection at a time, shared by every scrape that arrives while it runs, and bounded
in time: a hung driver call costs a scrape its per-GPU values, never the scrape itself.

Collect-on-scrape, not a background cache. Measured here (`make bench`): a full collection of
8 simulated H100s is about 750 NVML calls and costs a few milliseconds; on real GPUs the calls
cost about 0.1-0.4 ms each (nvidia_gpu_exporter, gpustat), so tens of milliseconds, far inside
any scrape timeout. A cache would serve values up to one interval old and hide the moment a GPU
stops answering (the demo showed a lost GPU as accessible for a second): fresh reads keep
`gpu_accessible` and the alert rules exact. Two measured exceptions: NVLink error counters, 576
of those ~750 calls, are re-read every `nvlink_interval` seconds (a rate over minutes does not
need them fresher); and `min_interval` (off by default) lets scrapes share a recent collection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from queue import SimpleQueue

from exporters.gpu.device import Sample, read_device, read_nvlink
from exporters.gpu.errors import COLLECT_TIMEOUT, OTHER, DriverFailure, ErrorCounts, GpuLost
from exporters.gpu.session import NvmlSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    samples: list[Sample]
    accessible: dict[str, bool] = field(default_factory=dict)  # by uuid
    duration: float = 0.0
    success: bool = False
    nvlink: list[Sample] = field(default_factory=list)
    nvlink_version: object = None  # the same object while the NVLink samples are unchanged


class _Owner:
    """The single daemon thread that makes every collection's NVML calls (NVML state that spans
    calls must not be touched by concurrent scrapes; a hung call must not block exit)."""

    def __init__(self, fn: Callable[[], Snapshot]) -> None:
        self._fn = fn
        self._queue: SimpleQueue[Future] = SimpleQueue()
        threading.Thread(target=self._run, name="nvml-collect", daemon=True).start()

    def submit(self) -> Future:
        fut: Future = Future()
        self._queue.put(fut)
        return fut

    def _run(self) -> None:
        while True:
            fut = self._queue.get()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(self._fn())
                except BaseException as exc:  # surfaced to every waiting scrape
                    fut.set_exception(exc)


class Sampler:
    def __init__(self, session: NvmlSession, errors: ErrorCounts, *, min_interval: float = 0.0,
                 nvlink_interval: float = 10.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.session = session
        self.min_interval = min_interval
        self.nvlink_interval = nvlink_interval
        self._nvlink_version = object()
        self._last: tuple[float, Snapshot] | None = None
        self.errors = errors
        self._clock = clock
        self._lock = threading.Lock()
        self._inflight: Future | None = None
        self._owner = _Owner(self._collect)
        self.last_duration = 0.0
        self.last_success = False
        # called with each complete collection, on the collection thread (the latched faults)
        self.observers: list[Callable[[Snapshot], None]] = []

    def sample(self, timeout: float) -> Snapshot | None:
        """The result of the in-flight collection, or of a new one; None if it overran `timeout`."""
        with self._lock:
            last = self._last
            if last is not None and self._clock() - last[0] < self.min_interval:
                return last[1]  # e.g. both Prometheus replicas of an HA pair scraping together
            if self._inflight is None or self._inflight.done():
                self._inflight = self._owner.submit()
            fut = self._inflight
        try:
            snap = fut.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            self.errors.inc(COLLECT_TIMEOUT)
            self.last_success = False
            return None
        except Exception:  # a bug must cost per-GPU values, not the scrape (no HTTP 500)
            log.exception("NVML collection failed")
            self.errors.inc(OTHER)
            self.last_success = False
            return None
        self.last_duration, self.last_success = snap.duration, snap.success
        with self._lock:
            self._last = (self._clock(), snap)
        return snap

    def _collect(self) -> Snapshot:
        start = self._clock()
        session = self.session
        if not session.ensure():
            return Snapshot([], duration=self._clock() - start)
        samples: list[Sample] = []
        nvlink: list[Sample] = []
        accessible: dict[str, bool] = {}
        changed = False
        try:
            for dev in session.devices():
                try:
                    if dev.handle is None:
                        raise GpuLost("no handle since the last init")
                    samples.extend(read_device(session.nvml, dev, self.errors))
                    if start - dev.nvlink_at >= self.nvlink_interval:
                        dev.nvlink, dev.nvlink_at, changed = read_nvlink(session.nvml, dev, self.errors), start, True
                    dev.accessible = True
                except GpuLost:
                    dev.accessible = False
                    changed = changed or bool(dev.nvlink)
                    dev.nvlink, dev.nvlink_at = [], float("-inf")  # no values for a lost GPU
                accessible[dev.uuid] = dev.accessible
                nvlink.extend(dev.nvlink)
        except DriverFailure as exc:
            session.mark_down(str(exc))
            return Snapshot([], duration=self._clock() - start)
        if changed:
            self._nvlink_version = object()
        success = session.visible > 0  # zero GPUs is a broken mount, not an idle node
        snap = Snapshot(samples, accessible, self._clock() - start, success, nvlink, self._nvlink_version)
        for observe in self.observers:
            try:
                observe(snap)
            except Exception:  # an observer must not cost the scrape its values
                log.exception("collection observer failed")
        return snap
