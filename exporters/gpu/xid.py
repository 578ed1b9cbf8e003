"""XID errors, counted per GPU, code and source outside the scrape path, so the counts stay
visible while collections fail and no XID between two scrapes is lost. Two sources feed the same
counts: NVML's event API (here, `XidWatcher`) and the kernel log (`exporters/gpu/kernel_log.py`).

Each source has its own series (`source="nvml"|"kernel"`): the same fault seen by both is one
event per source, and the rules and dashboards take `max without (source)` of `increase()`, so it
counts once, and still counts when one source is down. `gpu_xid_last_timestamp_seconds` has no
source label: it is the latest time either source saw the code."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporters.gpu.errors import ErrorCounts, Outcome, classify
from exporters.gpu.session import Device, NvmlSession, text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class XidEvent:
    gpu: str
    uuid: str
    xid: int
    timestamp: float
    source: str = "nvml"  # "nvml" | "kernel"


SOURCES = ("nvml", "kernel")


Key = tuple[str, ...]


@dataclass(frozen=True)
class XidSnapshot:
    counts: dict[Key, int]  # (gpu, uuid, xid, source)
    last: dict[Key, float]  # (gpu, uuid, xid)
    follow_on: dict[Key, int]  # (gpu, uuid, xid, cause)
    version: object


class XidCounts:
    def __init__(self, precreate: tuple[int, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._precreate = precreate
        self._counts: dict[Key, int] = {}
        self._last: dict[Key, float] = {}
        self._follow_on: dict[Key, int] = {}
        self.version = object()  # replaced on every change, so renderings can be reused until then

    def ensure_device(self, gpu: str, uuid: str, source: str = "nvml") -> None:
        with self._lock:
            for code in self._precreate:
                if (gpu, uuid, str(code), source) not in self._counts:
                    self._counts[(gpu, uuid, str(code), source)] = 0
                    self.version = object()

    def record(self, event: XidEvent) -> None:
        with self._lock:
            key = (event.gpu, event.uuid, str(event.xid), event.source)
            self._counts[key] = self._counts.get(key, 0) + 1
            last = key[:3]
            self._last[last] = max(self._last.get(last, 0.0), event.timestamp)
            self.version = object()

    def record_follow_on(self, event: XidEvent, cause: int) -> None:
        """An XID the driver says was caused by an earlier one (45 "caused by previous Xid N"):
        not a new fault, so not in gpu_xid_errors_total."""
        with self._lock:
            key = (event.gpu, event.uuid, str(event.xid), str(cause))
            self._follow_on[key] = self._follow_on.get(key, 0) + 1
            self.version = object()

    def snapshot(self) -> XidSnapshot:
        """Counts, last-seen times and the version they belong to, read together."""
        with self._lock:
            return XidSnapshot(dict(self._counts), dict(self._last), dict(self._follow_on), self.version)


def _handle_key(handle: Any) -> int:
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


class XidWatcher:
    """A daemon thread on nvmlEventSetWait; it survives errors and re-registers after a re-init."""

    def __init__(
        self,
        session: NvmlSession,
        counts: XidCounts,
        errors: ErrorCounts,
        *,
        request_init: Callable[[], object],
        listeners: tuple[Callable[[XidEvent], None], ...] = (),
        wait_ms: int = 1000,
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.session, self.counts, self.errors = session, counts, errors
        self.listeners = list(listeners)
        self._request_init = request_init
        self._wait_ms = wait_ms
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-xid", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            if not self.session.up:
                self._request_init()
                if not self.session.up:
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
            try:
                self._watch(self.session.generation)
                delay = self._backoff[0]
            except Exception:  # never let the thread die; log and back off
                log.exception("XID event thread failed; retrying in %.0f s", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])

    def _register(self, nvml: Any, event_set: Any) -> dict[int, Device]:
        by_handle: dict[int, Device] = {}
        for dev in self.session.devices():
            self.counts.ensure_device(str(dev.index), dev.uuid)
            if dev.handle is None:
                continue
            try:
                nvml.nvmlDeviceRegisterEvents(dev.handle, nvml.nvmlEventTypeXidCriticalError, event_set)
            except nvml.NVMLError as err:
                self.errors.inc(classify(err)[0])
                log.warning("GPU %s (%s): cannot watch XID events: %s", dev.index, dev.uuid, err)
                continue
            by_handle[_handle_key(dev.handle)] = dev  # cached: a failing GPU may not answer later
        return by_handle

    def _watch(self, generation: int) -> None:
        nvml = self.session.nvml
        event_set = nvml.nvmlEventSetCreate()
        try:
            by_handle = self._register(nvml, event_set)
            while not self._stop.is_set() and self.session.up and self.session.generation == generation:
                try:
                    data = nvml.nvmlEventSetWait(event_set, self._wait_ms)
                except nvml.NVMLError as err:
                    if err.value == nvml.NVML_ERROR_TIMEOUT:
                        continue
                    label, outcome = classify(err)
                    self.errors.inc(label)
                    if outcome is Outcome.DRIVER:
                        return  # the collection path re-initialises; then we re-register
                    self._stop.wait(0.1)
                    continue
                if data.eventType & nvml.nvmlEventTypeXidCriticalError:
                    self._emit(by_handle, data)
        finally:
            with contextlib.suppress(nvml.NVMLError):  # a set on a dead library needs no freeing
                nvml.nvmlEventSetFree(event_set)

    def _emit(self, by_handle: dict[int, Device], data: Any) -> None:
        dev = by_handle.get(_handle_key(data.device))
        if dev is None:
            log.warning("XID %d from an unregistered device", data.eventData)
            return
        publish(XidEvent(str(dev.index), dev.uuid, int(data.eventData), time.time()), self.counts, self.listeners)


def publish(event: XidEvent, counts: XidCounts, listeners: list[Callable[[XidEvent], None]], *,
            quiet: bool = False) -> None:
    """Count an event and hand it to the listeners (the fast path); both sources call this.
    `quiet`: the caller logs (the kernel-log reader rate-limits floods of one code)."""
    counts.record(event)
    if not quiet:
        log.warning("XID %d on GPU %s (%s), from %s", event.xid, event.gpu, text(event.uuid), event.source)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a listener (e.g. the alert push) must not stop XID counting
            log.exception("XID listener failed")
