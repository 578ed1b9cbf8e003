"""Latched GPU faults: a fault stays pending until the node reboots or the GPU is reset, not for a
fixed window after the event, and it survives an exporter restart.

Neither NVML nor the kernel log replays an XID after the exporter restarts, so the exporter keeps
its own record: a small JSON file under `--state-dir`, keyed by the node's boot ID
(`/proc/sys/kernel/random/boot_id`). A file written under another boot ID is from before a reboot
and is dropped. While the node stays up, a fault is cleared only by what NVML says about the GPU:

- its recovery action was seen non-zero after the fault and now reads 0 (NONE): the driver no
  longer asks for a reset or reboot;
- it was seen inaccessible (lost, reset required) and now answers again: it was re-enumerated.

An XID after which the driver asks for nothing and the GPU keeps answering stays pending until
the reboot. Which faults latch: the XIDs that need node action (`vigil_common.xid.NODE_ACTION`)
and a GPU that became inaccessible (`kind="lost"`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from exporters.gpu.device import Sample
from exporters.gpu.sampler import Snapshot
from exporters.gpu.xid import XidEvent
from vigil_common import xid as xid_catalog

log = logging.getLogger(__name__)

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
DEFAULT_STATE_DIR = "/var/lib/vigil-gpu-exporter"
STATE_FILE = "faults.json"
LATCHED_XIDS = frozenset(xid_catalog.NODE_ACTION)
XID, LOST = "xid", "lost"


@dataclass(frozen=True)
class Fault:
    gpu: str
    uuid: str
    kind: str  # "xid" | "lost"
    xid: str  # the code for kind "xid", "" for "lost"
    since: float  # Unix time the fault was first seen
    recovery_seen: bool = False  # the driver asked for a recovery action after the fault
    lost_seen: bool = False  # the GPU was inaccessible after the fault

    @property
    def key(self) -> tuple[str, str, str]:
        return self.uuid, self.kind, self.xid


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """The boot ID, "" if it cannot be read (then the state file is never matched and never kept)."""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        log.warning("cannot read the boot ID from %s (%s): latched faults will not survive a restart",
                    path, exc.strerror)
        return ""


class StateFile:
    """The faults of one boot in `<dir>/faults.json`, written whole and renamed into place."""

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / STATE_FILE

    def load(self, boot_id: str) -> list[Fault]:
        """The faults saved under `boot_id`; [] for a missing file or one from another boot.
        Raises OSError or ValueError for a file that cannot be read."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        if not isinstance(data, dict) or not boot_id or data.get("boot_id") != boot_id:
            return []  # written before a reboot: every fault in it was cleared by the reboot
        return [Fault(**f) for f in data.get("faults", [])]

    def save(self, boot_id: str, faults: list[Fault]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"boot_id": boot_id, "faults": [asdict(f) for f in faults]}, indent=1))
        os.replace(tmp, self.path)


class FaultState:
    """The pending faults; the XID listeners latch, each collection clears (or latches `lost`).

    `boot_id` is read on every collection: the simulated backend's reboot changes it in place."""

    def __init__(self, store: StateFile | None, *, boot_id: Callable[[], str],
                 clock: Callable[[], float] = time.time) -> None:
        self._store, self._boot_id, self._clock = store, boot_id, clock
        self._lock = threading.Lock()
        self._faults: dict[tuple[str, str, str], Fault] = {}
        self._seen: dict[str, tuple[bool | None, float | None]] = {}  # uuid -> (accessible, recovery) last seen
        self._boot = boot_id()
        self.persisted = False
        self._load()

    def _load(self) -> None:
        if self._store is None:
            return
        try:
            faults = self._store.load(self._boot)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("cannot read %s (%s); starting with no pending faults", self._store.path, exc)
            return
        self._faults = {f.key: f for f in faults}
        self.persisted = bool(self._boot)
        if faults:
            log.warning("%d GPU fault(s) still pending from before this exporter started: %s", len(faults),
                        ", ".join(f"GPU {f.gpu} {f.kind} {f.xid}".rstrip() for f in faults))

    def _save(self) -> None:
        """Under the lock, after a change."""
        if self._store is None or not self._boot:
            return
        try:
            self._store.save(self._boot, sorted(self._faults.values(), key=lambda f: f.key))
            self.persisted = True
        except OSError as exc:
            if self.persisted:
                log.warning("cannot write %s (%s): pending faults are kept in memory only", self._store.path, exc)
            self.persisted = False

    def pending(self) -> list[Fault]:
        with self._lock:
            return sorted(self._faults.values(), key=lambda f: (int(f.gpu) if f.gpu.isdigit() else 0, f.key))

    def on_xid(self, event: XidEvent) -> None:
        """An XID listener (both sources): latch the XIDs that need node action."""
        if event.xid not in LATCHED_XIDS:
            return
        self._latch(Fault(event.gpu, event.uuid, XID, str(event.xid), event.timestamp))

    def _latch(self, fault: Fault) -> None:
        with self._lock:
            self._check_boot()
            if fault.key in self._faults:
                return
            accessible, recovery = self._seen.get(fault.uuid, (None, None))
            # what the last collection saw counts too: the driver may have set it just before the event
            self._faults[fault.key] = replace(fault, lost_seen=accessible is False,
                                              recovery_seen=bool(recovery and recovery > 0))
            self._save()
        log.warning("GPU %s (%s): %s %s pending until a GPU reset or a reboot", fault.gpu, fault.uuid, fault.kind,
                    fault.xid)

    def _check_boot(self) -> None:
        """Under the lock: a new boot ID clears every fault (the simulated reboot; a real one
        restarts the exporter, and `_load` drops the old boot's file)."""
        boot = self._boot_id()
        if boot == self._boot:
            return
        if self._faults:
            log.info("boot ID changed (%s -> %s): %d pending fault(s) cleared", self._boot or "-", boot or "-",
                     len(self._faults))
        self._boot, self._faults = boot, {}
        self._save()

    def observe(self, snap: Snapshot, gpus: dict[str, str]) -> None:
        """After each collection: what NVML says about each GPU now. `gpus`: uuid -> index."""
        if not snap.accessible:
            return  # no view of the GPUs (NVML down, collection failed): change nothing
        recovery = {s.labels[1]: s.value for s in snap.samples if s.name == "gpu_recovery_action"}
        now = self._clock()
        with self._lock:
            self._check_boot()
            self._seen = {uuid: (ok, recovery.get(uuid)) for uuid, ok in snap.accessible.items()}
            changed = False
            for uuid, ok in snap.accessible.items():
                if not ok and (uuid, LOST, "") not in self._faults:
                    self._faults[(uuid, LOST, "")] = Fault(gpus.get(uuid, ""), uuid, LOST, "", now, lost_seen=True)
                    log.warning("GPU %s (%s) lost: pending until it answers again or a reboot", gpus.get(uuid), uuid)
                    changed = True
            for key, f in list(self._faults.items()):
                new = _next(f, snap.accessible.get(f.uuid), recovery.get(f.uuid))
                if new is None:
                    del self._faults[key]
                    log.info("GPU %s (%s): %s %s cleared (%s)", f.gpu, f.uuid, f.kind, f.xid,
                             "answers again" if f.lost_seen else "recovery action back to none")
                elif new != f:
                    self._faults[key] = new
                else:
                    continue
                changed = True
            if changed:
                self._save()

    def samples(self) -> list[Sample]:
        """gpu_fault_pending, its start time, and whether the state is on disk (a SampleSource)."""
        out = []
        for f in self.pending():
            labels = (f.gpu, f.uuid, f.kind, f.xid)
            out += [Sample("gpu_fault_pending", labels, 1), Sample("gpu_fault_pending_since_timestamp_seconds",
                                                                   labels, f.since)]
        out.append(Sample("gpu_exporter_fault_state_persisted", (), 1 if self.persisted else 0))
        return out


def _next(f: Fault, accessible: bool | None, recovery: float | None) -> Fault | None:
    """The fault after one collection; None once NVML says the GPU was reset."""
    if accessible is False:
        return f if f.lost_seen else replace(f, lost_seen=True)
    if accessible and f.lost_seen:
        return None  # it answers again: re-enumerated after a reset
    if recovery is None:
        return f
    if recovery > 0:
        return f if f.recovery_seen else replace(f, recovery_seen=True)
    return None if f.recovery_seen else f
