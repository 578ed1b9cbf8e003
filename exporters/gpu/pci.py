"""PCI addresses as the kernel log and NVML write them, reduced to one key.

The driver logs `PCI:0000:3b:00` (4-digit domain, lower case, no function; some lines add `.0`),
NVML's `busId` is `00000000:3B:00.0` and `busIdLegacy` `0000:3B:00.0`. Both name the same
(domain, bus, device), which is what we compare: width, case and function are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ADDRESS = re.compile(r"^(?:PCI:)?(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})(?:\.[0-7])?$")


@dataclass(frozen=True, order=True)
class PciAddress:
    domain: int
    bus: int
    device: int

    def __str__(self) -> str:  # the kernel's spelling
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}"


def parse_pci(text: str) -> PciAddress | None:
    """`0000:3b:00`, `00000000:3B:00.0`, `PCI:0004:00:00.0`, `3b:00` (domain 0); None if not one."""
    m = _ADDRESS.match(text.strip())
    if m is None:
        return None
    domain, bus, device = m.groups()
    return PciAddress(int(domain or "0", 16), int(bus, 16), int(device, 16))


@dataclass(frozen=True)
class GpuRef:
    gpu: str  # NVML index, as the per-GPU series' `gpu` label
    uuid: str


class PciMap:
    """PCI address -> GPU, from NVML's inventory plus what the kernel log itself says
    (`NVRM: GPU at PCI:...: GPU-<uuid>`), so events map even while NVML is down."""

    def __init__(self) -> None:
        self._by_pci: dict[PciAddress, GpuRef] = {}
        self._uuid_by_pci: dict[PciAddress, str] = {}  # learned from the log

    def update(self, devices: Iterable[tuple[str, str, str]]) -> None:
        """(index, uuid, NVML busId) of every known GPU; replaces the NVML part."""
        by_pci = {}
        for index, uuid, bus_id in devices:
            addr = parse_pci(bus_id) if bus_id else None
            if addr is not None:
                by_pci[addr] = GpuRef(index, uuid)
        self._by_pci = by_pci

    def learn(self, addr: PciAddress, uuid: str) -> None:
        self._uuid_by_pci[addr] = uuid

    def lookup(self, addr: PciAddress) -> GpuRef | None:
        ref = self._by_pci.get(addr)
        if ref is not None:
            return ref
        uuid = self._uuid_by_pci.get(addr)
        if uuid is None:
            return None
        for known in self._by_pci.values():  # NVML knows the UUID under another address? take its index
            if known.uuid == uuid:
                return known
        return GpuRef("", uuid)
