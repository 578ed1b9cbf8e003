"""Parse the NVIDIA driver's kernel-log lines: `NVRM: Xid`, NVSwitch `SXid` and the
`NVRM: GPU at PCI:...: GPU-<uuid>` line that maps an address to a GPU.

Every generation of the Xid line is accepted (see tests/gpu/test_nvrm.py for the fixtures):
no `PCI:` prefix (oldest), no pid/name (old), `pid='<unknown>', name=<unknown>`, a pid and a
name that may contain `:[].` (`nvc:[driver]`, `train.3`), the MIG forms `(PCI:... GPU-I:01
GPU-CI:00)`, and an optional `.N` function. A line that says `NVRM: Xid` or `SXid` but does not
parse is reported as malformed, never raised. Pure functions: no I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporters.gpu.pci import PciAddress, parse_pci
from vigil_common import sxid
from vigil_common import xid as xid_catalog

_PCI = r"(?P<pci>[0-9a-fA-F]{1,8}:[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}(?:\.[0-7])?)"
_XID = re.compile(r"NVRM: Xid \((?:PCI:)?" + _PCI + r"(?: GPU-I:(?P<gi>\d+))?(?: GPU-CI:(?P<ci>\d+))?\): "
                  r"(?P<xid>\d{1,5})(?:, (?P<rest>.*))?$")
_DETAIL = re.compile(r"^pid=(?P<pid>'<unknown>'|<unknown>|\d+), name=(?P<name>.*?)(?:, (?P<msg>.*))?$")
_FOLLOW_ON = re.compile(r"caused by previous Xid (\d+)")
_SXID = re.compile(r"nvidia-nvswitch(?P<switch>\d+): SXid \((?:PCI:)?" + _PCI + r"\): (?P<sxid>\d{1,6})"
                   r"(?:, (?P<rest>.*))?$")
_GPU_AT = re.compile(r"NVRM: GPU at PCI:" + _PCI + r": (?P<uuid>GPU-[0-9a-fA-F-]{8,})")
_XID_MARK = "NVRM: Xid"
_SXID_MARK = re.compile(r"nvswitch\d*: SXid")



@dataclass(frozen=True)
class XidLine:
    pci: PciAddress
    xid: int
    message: str
    pid: str | None = None  # None when the line has none; "'<unknown>'" as the driver writes it
    name: str | None = None
    gpu_instance: int | None = None  # MIG: GPU-I
    compute_instance: int | None = None  # MIG: GPU-CI
    follows: int | None = None  # XID 45 "caused by previous Xid N": a follow-on, not a new fault


@dataclass(frozen=True)
class SxidLine:
    switch: str  # "nvswitch3"
    pci: PciAddress
    sxid: int
    severity: str  # vigil_common.sxid.SEVERITIES
    message: str


@dataclass(frozen=True)
class GpuAtLine:
    pci: PciAddress
    uuid: str


@dataclass(frozen=True)
class Malformed:
    kind: str  # "xid" | "sxid"
    line: str


Parsed = XidLine | SxidLine | GpuAtLine | Malformed


def _xid(m: re.Match) -> XidLine:
    rest = m.group("rest") or ""
    pid = name = None
    message = rest
    detail = _DETAIL.match(rest)
    if detail is not None:
        pid, name, message = detail.group("pid"), detail.group("name"), detail.group("msg") or ""
    xid = int(m.group("xid"))
    follow = _FOLLOW_ON.search(message) if xid == xid_catalog.FOLLOW_ON else None
    gi, ci = m.group("gi"), m.group("ci")
    return XidLine(pci=_address(m), xid=xid, message=message, pid=pid, name=name,
                   gpu_instance=int(gi) if gi else None, compute_instance=int(ci) if ci else None,
                   follows=int(follow.group(1)) if follow else None)


def _address(m: re.Match) -> PciAddress:
    addr = parse_pci(m.group("pci"))
    assert addr is not None  # the pattern admits only what parse_pci reads
    return addr


def parse_line(line: str) -> Parsed | None:
    """One kernel-log message; None for lines that are not the driver's XID/SXID/UUID lines."""
    if _XID_MARK in line:
        m = _XID.search(line)
        return _xid(m) if m else Malformed("xid", line)
    if "SXid" in line and _SXID_MARK.search(line):
        m = _SXID.search(line)
        if m is None:
            return Malformed("sxid", line)
        rest = m.group("rest") or ""
        return SxidLine(switch=f"nvswitch{m.group('switch')}", pci=_address(m), sxid=int(m.group("sxid")),
                        severity=sxid.severity_of(rest), message=rest)
    if "NVRM: GPU at PCI:" in line:
        m = _GPU_AT.search(line)
        return GpuAtLine(_address(m), m.group("uuid")) if m else None
    return None
