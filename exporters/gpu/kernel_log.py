"""The kernel-log reader: a daemon thread that tails /dev/kmsg (or a file), turns the driver's
Xid lines into the same XID counts the NVML event thread feeds (`source="kernel"`), counts
NVSwitch SXids, and hands critical XIDs to the fast path like NVML's.

It needs no NVML to count: the PCI address maps to a GPU through NVML's last-known inventory,
or through the driver's own `NVRM: GPU at PCI:...: GPU-<uuid>` line. Only kernel records
(facility 0) count: a user process can write /dev/kmsg, but not as the kernel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporters.gpu.device import Sample
from exporters.gpu.errors import ErrorCounts
from exporters.gpu.kmsg import FileSource, KmsgSource, Record, Source, is_char_device
from exporters.gpu.nvrm import GpuAtLine, Malformed, SxidLine, XidLine, parse_line
from exporters.gpu.pci import PciMap
from exporters.gpu.session import NvmlSession
from exporters.gpu.xid import XidCounts, XidEvent, publish

log = logging.getLogger(__name__)

LOG_EVERY = 60.0  # seconds between log lines of the same GPU and code
LINE_RESULTS = ("follow_on", "gpu_uuid", "malformed", "sxid", "unmapped", "xid")


class SxidCounts:
    """gpu_nvswitch_sxid_errors_total and the last time of each, by (device, sxid, severity)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._last: dict[tuple[str, str, str], float] = {}
        self.version = object()

    def record(self, line: SxidLine, at: float) -> None:
        key = (line.switch, str(line.sxid), line.severity)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._last[key] = at
            self.version = object()

    def snapshot(self) -> tuple[dict, dict, object]:
        with self._lock:
            return dict(self._counts), dict(self._last), self.version


@dataclass
class KernelLogConfig:
    path: str
    poll: float = 0.5  # seconds a read waits for records before it checks for a stop
    backoff: tuple[float, float] = (1.0, 30.0)  # re-open after a failure


def open_source(path: str, wait: Callable[[float], object]) -> Source:
    return KmsgSource(path) if is_char_device(path) else FileSource(path, wait=wait)


class KernelLogReader:
    def __init__(self, config: KernelLogConfig, *, session: NvmlSession, xids: XidCounts, sxids: SxidCounts,
                 listeners: list[Callable[[XidEvent], None]], clock: Callable[[], float] = time.time,
                 opener: Callable[[str, Callable[[float], object]], Source] = open_source) -> None:
        self.config, self.session, self.xids, self.sxids = config, session, xids, sxids
        self.listeners = listeners  # shared with the NVML event thread: the fast path is one of them
        self.lines = ErrorCounts(LINE_RESULTS, "malformed")
        self.pci = PciMap()
        self.up = False
        self.lost = 0
        self._lost_before = 0  # of sources closed earlier
        self._clock, self._opener = clock, opener
        self._inventory: tuple = ()
        self._logged: dict[tuple, float] = {}  # (kind, device, code) -> when last logged
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kernel-log", daemon=True)
        self._handlers: dict[type, Callable] = {XidLine: self._xid, SxidLine: self._sxid, GpuAtLine: self._gpu_at,
                                                Malformed: self._malformed}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay, reported = self.config.backoff[0], False
        while not self._stop.is_set():
            try:
                source = self._opener(self.config.path, self._stop.wait)
            except OSError as exc:
                if not reported:
                    log.warning("kernel log %s: cannot open (%s); retrying", self.config.path, exc.strerror)
                    reported = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.backoff[1])
                continue
            log.info("reading the kernel log %s from its end", self.config.path)
            self.up, delay, reported = True, self.config.backoff[0], False
            try:
                self._follow(source)
            except Exception:  # never let the thread die; log, re-open, and go on
                log.exception("kernel log %s: read failed; re-opening", self.config.path)
                self._stop.wait(delay)
            finally:
                self.up = False
                self._lost_before += source.lost
                source.close()

    def _follow(self, source: Source) -> None:
        while not self._stop.is_set():
            self._refresh_inventory()  # also pre-creates the kernel source's series of new GPUs
            self.handle(source.read(self.config.poll))
            self.lost = self._lost_before + source.lost

    def handle(self, records: list[Record]) -> None:
        """Count what a batch of records says (the thread's step; tests call it directly too)."""
        for rec in records:
            if rec.facility not in (None, 0):
                continue
            parsed = parse_line(rec.message)
            if parsed is not None:
                self._handlers[type(parsed)](parsed)

    def _refresh_inventory(self) -> None:
        devices = self.session.devices()
        inventory = tuple((str(d.index), d.uuid, d.info.get("pci_bus_id", "")) for d in devices)
        if inventory != self._inventory:
            self.pci.update(inventory)
            for index, uuid, _ in inventory:
                self.xids.ensure_device(index, uuid, "kernel")
            self._inventory = inventory

    def _xid(self, line: XidLine) -> None:
        self._refresh_inventory()
        ref = self.pci.lookup(line.pci)
        if ref is None:  # counted, without a GPU to name; not pushed (no labels to match a rule's)
            self.lines.inc("unmapped")
            if self._should_log(("unmapped", str(line.pci), line.xid)):
                log.warning("XID %d at PCI %s, which no known GPU has", line.xid, line.pci)
            self.xids.record(XidEvent("", "", line.xid, self._clock(), "kernel"))
            return
        event = XidEvent(ref.gpu, ref.uuid, line.xid, self._clock(), "kernel")
        if line.follows is not None:
            self.lines.inc("follow_on")
            self.xids.record_follow_on(event, line.follows)
            return
        self.lines.inc("xid")
        if self._should_log(("xid", event.gpu, event.xid)):
            log.warning("XID %d on GPU %s (%s), from the kernel log: %.200s", line.xid, ref.gpu, ref.uuid,
                        line.message)
        publish(event, self.xids, self.listeners, quiet=True)

    def _sxid(self, line: SxidLine) -> None:
        self.lines.inc("sxid")
        if self._should_log(("sxid", line.switch, line.sxid)):
            log.warning("SXID %d (%s) on %s at PCI %s: %.200s", line.sxid, line.severity, line.switch, line.pci,
                        line.message)
        self.sxids.record(line, self._clock())

    def _should_log(self, key: tuple) -> bool:
        """One log line per GPU (or switch) and code a minute: a node once logged ~800K XID 95 lines
        (NVSentinel#1120); every one is counted, not every one is logged."""
        now = time.monotonic()
        if now - self._logged.get(key, float("-inf")) < LOG_EVERY:
            return False
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[key] = now
        return True

    def _gpu_at(self, line: GpuAtLine) -> None:
        self.lines.inc("gpu_uuid")
        self.pci.learn(line.pci, line.uuid)

    def _malformed(self, line: Malformed) -> None:
        self.lines.inc("malformed")
        if self._should_log(("malformed", line.kind, 0)):
            log.warning("kernel log: unparsed %s line: %.200s", line.kind, line.line)

    def samples(self) -> list[Sample]:
        """The reader's own state and the SXID counts, for the collector."""
        counts, last, _ = self.sxids.snapshot()
        out = [Sample("gpu_nvswitch_sxid_errors_total", k, v) for k, v in sorted(counts.items())]
        out += [Sample("gpu_nvswitch_sxid_last_timestamp_seconds", k, v) for k, v in sorted(last.items())]
        out.append(Sample("gpu_exporter_kernel_log_up", (), 1 if self.up else 0))
        lines = sorted(self.lines.snapshot().items())
        out += [Sample("gpu_exporter_kernel_log_lines_total", (r,), n) for r, n in lines]
        out.append(Sample("gpu_exporter_kernel_log_lost_records_total", (), self.lost))
        return out
