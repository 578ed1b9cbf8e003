"""The simulated backend's kernel log: the lines the NVIDIA driver and the NVSwitch driver write
for the faults `/simulate` injects, appended to a file in /dev/kmsg's record format
(`prio,seq,usec,-;message`), so the demo and the tests exercise the real kernel-log reader.

The first Xid of a GPU is preceded by the driver's `NVRM: GPU at PCI:...: GPU-<uuid>` and serial
lines (`_krcLogUuidOnce` in open-gpu-kernel-modules), as on a real node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from vigil_common import sxid as sxid_catalog
from vigil_common import xid as xid_catalog

KERN_WARNING = 4  # facility 0 (kernel) << 3 | level 4
# The NVSwitches of an HGX H100 baseboard: their own PCI functions, not any GPU's.
NVSWITCH_PCI = ("0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0")


class SimulatedKernelLog:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock, self._t0 = clock, clock()
        self._lock = threading.Lock()
        self._seq = 0
        self._announced: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def _write(self, *messages: str) -> None:
        with self._lock, self.path.open("a") as f:
            usec = int((self._clock() - self._t0) * 1e6)
            for message in messages:
                self._seq += 1
                f.write(f"{KERN_WARNING},{self._seq},{usec},-;{message}\n")

    def xid(self, *, pci: str, uuid: str, serial: str, xid: int) -> None:
        """`pci` in the kernel's spelling, `0000:18:00`."""
        lines = []
        if uuid not in self._announced:
            self._announced.add(uuid)
            lines += [f"NVRM: GPU at PCI:{pci}: {uuid}", f"NVRM: GPU Board Serial Number: {serial}"]
        meaning = xid_catalog.MEANING.get(xid, "Unknown error")
        lines.append(f"NVRM: Xid (PCI:{pci}): {xid}, pid='<unknown>', name=<unknown>, {meaning}")
        self._write(*lines)

    def sxid(self, *, switch: int, sxid: int) -> None:
        if not 0 <= switch < len(NVSWITCH_PCI):
            raise ValueError(f"nvswitch {switch} does not exist; this node has {len(NVSWITCH_PCI)}")
        severity, what = sxid_catalog.EXAMPLES.get(sxid, (sxid_catalog.NON_FATAL, "Link 00 error"))
        field = {sxid_catalog.FATAL: "Fatal, Link 28 ", sxid_catalog.NON_FATAL: "Non-fatal, Link 28 "}.get(severity, "")
        self._write(f"nvidia-nvswitch{switch}: SXid (PCI:{NVSWITCH_PCI[switch]}): {sxid}, {field}{what}")
