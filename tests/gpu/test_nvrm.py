"""The driver's kernel-log lines, parsed: real lines of several driver generations (fixtures from
shared/reference/round2-facts.md §1.2-1.3: the gpud, NVSentinel and open-gpu-kernel-modules
sources), PCI addresses in both cases and widths, and malformed lines that must not raise."""

from __future__ import annotations

import pytest

from exporters.gpu.nvrm import GpuAtLine, Malformed, SxidLine, XidLine, parse_line
from exporters.gpu.pci import PciAddress, PciMap, parse_pci

# (line, pci, xid, pid, name, message start)
XID_LINES = [
    ("NVRM: Xid (0000:03:00): 14, Channel 00000001", (0, 0x03, 0), 14, None, None, "Channel 00000001"),
    ("NVRM: Xid (PCI:0000:01:00): 32, Channel ID 00000000 intr 00004000", (0, 1, 0), 32, None, None, "Channel ID"),
    ("NVRM: Xid (PCI:0000:01:00): 79, GPU has fallen off the bus.", (0, 1, 0), 79, None, None, "GPU has fallen"),
    ("NVRM: Xid (PCI:0000:cb:00): 13, pid='<unknown>', name=<unknown>, Graphics SM Warp Exception on (GPC 7, "
     "TPC 7, SM 0): Illegal Instruction Parameter", (0, 0xCB, 0), 13, "'<unknown>'", "<unknown>", "Graphics SM"),
    ("NVRM: Xid (PCI:0000:05:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
     (0, 5, 0), 79, "'<unknown>'", "<unknown>", "GPU has fallen off the bus."),
    ("NVRM: Xid (PCI:0000:66:00): 32, pid=2280636, name=train.3, Channel ID 0000000d intr0 00040000",
     (0, 0x66, 0), 32, "2280636", "train.3", "Channel ID 0000000d"),
    ("NVRM: Xid (PCI:0000:dc:00): 45, pid=1818990, name=python3, Ch 00000001 caused by previous Xid 149",
     (0, 0xDC, 0), 45, "1818990", "python3", "Ch 00000001"),
    ("NVRM: Xid (PCI:0000:17:00): 119, pid=15822502, name=nvc:[driver], Timeout after 6s of waiting for RPC "
     "response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20802a02 0x8).",
     (0, 0x17, 0), 119, "15822502", "nvc:[driver]", "Timeout after 6s"),
    ("NVRM: Xid (PCI:0000:00:08.0): 145, RLW_REMAP Nonfatal XC1 i0 Link 10 (0x00000004 0x00000040 0x00000000 "
     "0x00000000 0x00000000 0x00000000)", (0, 0, 8), 145, None, None, "RLW_REMAP"),
    # with the kmsg header or a dmesg timestamp in front, as files and journald exports carry them
    ("4,1733,987654321,-;NVRM: Xid (PCI:0001:5D:00): 48, pid=1, name=x, DBE", (1, 0x5D, 0), 48, "1", "x", "DBE"),
    ("[ 1234.567890] NVRM: Xid (PCI:0000:3B:00): 74, pid=9, name=nccl, NVLink", (0, 0x3B, 0), 74, "9", "nccl", "NV"),
]


@pytest.mark.parametrize(("line", "pci", "xid", "pid", "name", "msg"), XID_LINES, ids=lambda v: str(v)[:40])
def test_xid_lines_of_every_generation(line, pci, xid, pid, name, msg):
    got = parse_line(line)
    assert isinstance(got, XidLine), got
    assert (got.pci, got.xid, got.pid, got.name) == (PciAddress(*pci), xid, pid, name)
    assert got.message.startswith(msg)


@pytest.mark.parametrize(("line", "gi", "ci"), [
    ("NVRM: Xid (PCI:0000:3b:00 GPU-I:01): 31, pid=77, name=infer, MMU Fault", 1, None),
    ("NVRM: Xid (PCI:0000:3b:00 GPU-I:02 GPU-CI:00): 43, pid='<unknown>', name=<unknown>, Ch 0000003a", 2, 0),
])
def test_mig_forms_name_the_parent_gpu_and_the_instance(line, gi, ci):
    got = parse_line(line)
    assert isinstance(got, XidLine)
    assert got.pci == PciAddress(0, 0x3B, 0) and (got.gpu_instance, got.compute_instance) == (gi, ci)


def test_xid_45_caused_by_a_previous_xid_is_a_follow_on():
    assert parse_line(XID_LINES[6][0]).follows == 149
    plain = parse_line("NVRM: Xid (PCI:0000:dc:00): 45, pid=1, name=python3, Ch 00000001, Preemptive cleanup")
    assert plain.xid == 45 and plain.follows is None


@pytest.mark.parametrize(("line", "switch", "pci", "sxid", "severity"), [
    ("nvidia-nvswitch3: SXid (PCI:0000:4e:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error (First)",
     "nvswitch3", (0, 0x4E, 0), 12028, "non_fatal"),
    ("nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 24007, Fatal, Link 28 sourcetrack timeout error (First)",
     "nvswitch0", (0, 0xC3, 0), 24007, "fatal"),
    ("nvidia-nvswitch0: SXid (PCI:0000:06:00.0): 20009, Non-fatal, Link 04 RX Short Error Rate",
     "nvswitch0", (0, 6, 0), 20009, "non_fatal"),
    ("nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 12033, Severity 1 Engine instance 00 Sub-engine instance 00",
     "nvswitch0", (0, 0xC3, 0), 12033, "unknown"),
    ("nvidia-nvswitch0: SXid (PCI:0004:00:00.0): 26006, SOE HALTED", "nvswitch0", (4, 0, 0), 26006, "unknown"),
])
def test_sxid_lines(line, switch, pci, sxid, severity):
    got = parse_line(line)
    assert isinstance(got, SxidLine)
    assert (got.switch, got.pci, got.sxid, got.severity) == (switch, PciAddress(*pci), sxid, severity)


def test_the_gpu_at_pci_line_maps_an_address_to_a_uuid():
    got = parse_line("NVRM: GPU at PCI:0000:3b:00: GPU-8f2c1d90-1234-5678-9abc-def012345678")
    assert got == GpuAtLine(PciAddress(0, 0x3B, 0), "GPU-8f2c1d90-1234-5678-9abc-def012345678")


@pytest.mark.parametrize("line", [
    "NVRM: Xid (PCI:zz:qq): 79, GPU has fallen off the bus.",
    "NVRM: Xid (PCI:0000:3b:00): seventy-nine",
    "NVRM: Xid (PCI:0000:3b:00",
    "nvidia-nvswitch1: SXid (PCI:0000:4e:00.0): twelve",
    "NVRM: Xid " + "\x00\xff" * 100,
])
def test_malformed_driver_lines_are_reported_not_raised(line):
    assert isinstance(parse_line(line), Malformed)


@pytest.mark.parametrize("line", [
    "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.95.05",
    "NVRM: GPU Board Serial Number: 1652420000003",
    "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    "",
])
def test_other_lines_are_ignored(line):
    assert parse_line(line) is None


@pytest.mark.parametrize(("text", "want"), [
    ("0000:3b:00", (0, 0x3B, 0)), ("00000000:3B:00.0", (0, 0x3B, 0)), ("0000:3B:00.0", (0, 0x3B, 0)),
    ("PCI:0004:00:00.0", (4, 0, 0)), ("3b:00", (0, 0x3B, 0)), ("00000001:5D:00.0", (1, 0x5D, 0)),
])
def test_pci_addresses_compare_ignoring_width_case_and_function(text, want):
    assert parse_pci(text) == PciAddress(*want)


def test_pci_map_from_nvml_bus_ids_and_from_the_log():
    m = PciMap()
    m.update([("0", "GPU-a", "00000000:18:00.0"), ("3", "GPU-d", "00000000:5D:00.0"), ("9", "GPU-j", "")])
    assert m.lookup(parse_pci("0000:5d:00")).gpu == "3"
    assert m.lookup(parse_pci("0000:99:00")) is None
    m.learn(parse_pci("0000:99:00"), "GPU-d")  # the driver said so; NVML knows GPU-d as index 3
    assert m.lookup(parse_pci("0000:99:00")).gpu == "3"
    m.learn(parse_pci("0000:aa:00"), "GPU-new")
    assert (m.lookup(parse_pci("0000:aa:00")).gpu, m.lookup(parse_pci("0000:aa:00")).uuid) == ("", "GPU-new")
