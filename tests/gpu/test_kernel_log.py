"""The kernel-log reader end to end: lines written to a log the exporter tails become XID counts per
GPU (`source="kernel"`), SXID counts and self-metrics; records are read from the end, never
replayed after a restart; /dev/kmsg's record format, continuation lines, escapes and overruns."""

from __future__ import annotations

import errno
import os
import socket
import uuid
from pathlib import Path

import pytest

from exporters.gpu.kernel_log import KernelLogConfig
from exporters.gpu.kmsg import FileSource, KmsgSource, parse_record
from exporters.gpu.simulated import SimulatedNVML

from .conftest import make_exporter, one, pick, scrape, wait_for

UUID = "GPU-5a1e0000-0000-4000-8000-{:012x}".format
# The simulated GPUs' buses (HGX H100): GPU 0 at 18, 1 at 2a, 2 at 3a, 3 at 5d, 4 at 9a, ...


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


@pytest.fixture
def kmsg(tmp_path):
    path = tmp_path / "kmsg"
    path.write_text("4,1,100,-;NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen "
                    "off the bus.\n")  # before the exporter started: must never be counted
    return path


@pytest.fixture
def started(kmsg):
    made = []

    def start(sim=None, **kw):
        exp = make_exporter(sim or SimulatedNVML(8), kernel_log=KernelLogConfig(str(kmsg), poll=0.05), **kw)
        made.append(exp)
        assert wait_for(lambda: exp.kernel_log.up)
        return exp

    yield start
    for exp in made:
        exp.stop()


def kernel_xids(exp, **labels) -> dict:
    return pick(scrape(exp), "gpu_xid_errors_total", source="kernel", **labels)


def test_lines_of_several_generations_count_per_gpu(started, kmsg):
    exp = started()
    write(kmsg,
          "NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus.",  # old: no pid/name
          "4,2,200,-;NVRM: Xid (PCI:0000:5D:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
          "[  99.1] NVRM: Xid (PCI:00000000:18:00.0): 13, pid=2280636, name=train.3, Graphics SM Warp Exception",
          "NVRM: Xid (0000:2a:00): 48, DBE (double bit error)",  # oldest: no PCI: prefix
          "NVRM: Xid (PCI:0000:3a:00 GPU-I:01 GPU-CI:00): 31, pid=5, name=nvc:[driver], MMU Fault",
          "NVRM: Xid (PCI:0000:9a:00): 119, pid=15822502, name=nvc:[driver], Timeout after 6s of waiting for RPC")
    assert wait_for(lambda: one(scrape(exp), "gpu_exporter_kernel_log_lines_total", result="xid") == 6)
    s = scrape(exp)
    assert one(s, "gpu_xid_errors_total", gpu="3", uuid=UUID(3), xid="79", source="kernel") == 2
    assert one(s, "gpu_xid_errors_total", gpu="0", xid="13", source="kernel") == 1
    assert one(s, "gpu_xid_errors_total", gpu="1", xid="48", source="kernel") == 1
    assert one(s, "gpu_xid_errors_total", gpu="2", xid="31", source="kernel") == 1
    assert one(s, "gpu_xid_errors_total", gpu="4", xid="119", source="kernel") == 1
    assert one(s, "gpu_xid_errors_total", gpu="3", xid="79", source="nvml") == 0, "NVML saw nothing"
    assert one(s, "gpu_xid_last_timestamp_seconds", gpu="3", xid="79") > 0
    assert one(s, "gpu_exporter_kernel_log_up") == 1


def test_start_at_the_end_and_no_replay_after_a_restart(started, kmsg):
    first = started()
    assert one(scrape(first), "gpu_xid_errors_total", gpu="3", xid="79", source="kernel") == 0
    write(kmsg, "NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus.")
    assert wait_for(lambda: one(scrape(first), "gpu_xid_errors_total", gpu="3", xid="79", source="kernel") == 1)
    first.stop()
    second = started()  # the exporter restarts: the log now holds two XID 79s, both older than it
    write(kmsg, "NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=x, Graphics Exception")
    assert wait_for(lambda: one(scrape(second), "gpu_xid_errors_total", gpu="0", xid="13", source="kernel") == 1)
    assert one(scrape(second), "gpu_xid_errors_total", gpu="3", xid="79", source="kernel") == 0


def test_lines_split_across_reads_are_buffered(tmp_path):
    path = tmp_path / "log"
    path.write_text("old line\n")
    src = FileSource(str(path), wait=lambda _: None)
    with path.open("a") as f:
        f.write("NVRM: Xid (PCI:0000:5d:00): 7")
        f.flush()
        assert src.read(0) == []
        f.write("9, GPU has fallen off the bus.\n SUBSYSTEM=pci\nnext partial")
        f.flush()
        [rec] = src.read(0)
        assert rec.message == "NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus."
        f.write(" line\n")
        f.flush()
        assert [r.message for r in src.read(0)] == ["next partial line"]
    path.write_text("")  # truncated (rotated): what comes next is new
    write(path, "after rotation")
    assert [r.message for r in src.read(0)] == ["after rotation"]
    src.close()


def test_malformed_lines_are_counted_and_the_reader_goes_on(started, kmsg):
    exp = started()
    write(kmsg, "NVRM: Xid (PCI:zz): what", "nvidia-nvswitch1: SXid (PCI:0000:4e:00.0): nope",
          "NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus.")
    assert wait_for(lambda: one(scrape(exp), "gpu_exporter_kernel_log_lines_total", result="xid") == 1)
    assert one(scrape(exp), "gpu_exporter_kernel_log_lines_total", result="malformed") == 2
    assert exp.kernel_log.up


def test_follow_ons_unmapped_and_sxids(started, kmsg):
    exp = started()
    write(kmsg,
          "NVRM: Xid (PCI:0000:dc:00): 45, pid=1818990, name=python3, Ch 00000001 caused by previous Xid 149",
          "NVRM: Xid (PCI:0000:5d:00): 45, pid=1818990, name=python3, Ch 00000001 caused by previous Xid 79",
          "NVRM: GPU at PCI:0000:ee:00: GPU-0e0e0e0e-0000-4000-8000-000000000000",
          "NVRM: Xid (PCI:0000:ee:00): 79, GPU has fallen off the bus.",
          "nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 24007, Fatal, Link 28 sourcetrack timeout error (First)",
          "nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 24007, Fatal, Link 28 sourcetrack timeout error (First)",
          "nvidia-nvswitch3: SXid (PCI:0000:4e:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error")
    assert wait_for(lambda: one(scrape(exp), "gpu_exporter_kernel_log_lines_total", result="sxid") == 3)
    s = scrape(exp)
    assert one(s, "gpu_xid_follow_on_errors_total", gpu="3", xid="45", cause_xid="79") == 1
    assert one(s, "gpu_xid_errors_total", gpu="3", xid="45", source="kernel") == 0, "a follow-on is no new fault"
    assert one(s, "gpu_exporter_kernel_log_lines_total", result="unmapped") == 1  # 0000:dc:00: no GPU there
    assert one(s, "gpu_xid_errors_total", gpu="", uuid="GPU-0e0e0e0e-0000-4000-8000-000000000000", xid="79",
               source="kernel") == 1, "mapped through the driver's own GPU-at-PCI line"
    assert one(s, "gpu_nvswitch_sxid_errors_total", device="nvswitch0", sxid="24007", severity="fatal") == 2
    assert one(s, "gpu_nvswitch_sxid_errors_total", device="nvswitch3", sxid="12028", severity="non_fatal") == 1
    assert one(s, "gpu_nvswitch_sxid_last_timestamp_seconds", device="nvswitch0", sxid="24007") > 0


def test_counts_go_on_while_nvml_is_down_and_reach_the_fast_path(started, kmsg):
    sim = SimulatedNVML(8)
    exp = started(sim)
    seen = []
    exp.watcher.listeners.append(seen.append)
    sim.fail_driver(9)  # NVML_ERROR_DRIVER_NOT_LOADED: no NVML events from now on
    write(kmsg, "NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.")
    assert wait_for(lambda: any(e.source == "kernel" for e in seen))
    assert [(e.gpu, e.uuid, e.xid) for e in seen] == [("3", UUID(3), 79)], "mapped by the last-known inventory"
    assert one(scrape(exp), "gpu_xid_errors_total", gpu="3", xid="79", source="kernel") == 1


def test_user_records_do_not_count_as_the_kernels(started, kmsg):
    exp = started()
    write(kmsg, "12,7,300,-;NVRM: Xid (PCI:0000:5d:00): 79, forged by a user process",  # facility 1 (user)
          "4,8,300,-;NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=x, real")
    assert wait_for(lambda: one(scrape(exp), "gpu_exporter_kernel_log_lines_total", result="xid") == 1)
    assert one(scrape(exp), "gpu_xid_errors_total", gpu="3", xid="79", source="kernel") == 0


def test_the_simulated_backend_logs_what_it_injects(tmp_path):
    from exporters.gpu.simulated_kmsg import SimulatedKernelLog

    path = tmp_path / "sim" / "kmsg"
    sim = SimulatedNVML(8, kernel_log=SimulatedKernelLog(path))
    exp = make_exporter(sim, kernel_log=KernelLogConfig(str(path), poll=0.05))
    try:
        assert wait_for(lambda: exp.kernel_log.up)
        sim.inject(3, "xid", 79)
        sim.inject_sxid(2, 24007)

        def both():
            s = scrape(exp)
            return (one(s, "gpu_xid_errors_total", gpu="3", xid="79", source="nvml") == 1 and
                    one(s, "gpu_xid_errors_total", gpu="3", xid="79", source="kernel") == 1 and
                    pick(s, "gpu_nvswitch_sxid_errors_total", device="nvswitch2", sxid="24007", severity="fatal"))
        assert wait_for(both)
        text = path.read_text()
        assert "NVRM: GPU at PCI:0000:5d:00: " + UUID(3) in text and "NVRM: Xid (PCI:0000:5d:00): 79, " in text
    finally:
        exp.stop()


# ---- /dev/kmsg ----------------------------------------------------------------------------------

def test_kmsg_records_continuations_escapes_and_overruns():
    """KmsgSource over a SOCK_SEQPACKET pair: one read() returns one record, as /dev/kmsg does."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.setblocking(False)  # as the reader opens /dev/kmsg: O_NONBLOCK, EAGAIN when no record is left
    overrun = {"once": True}

    def read(fd: int, n: int) -> bytes:
        raw = os.read(fd, n)
        if raw.startswith(b"6,10,") and overrun.pop("once", False):
            a.send(raw)  # deliver it again after the EPIPE, as the kernel goes on from the oldest kept record
            raise OSError(errno.EPIPE, "Broken pipe")
        return raw

    src = KmsgSource("socketpair", read=read, opener=lambda _: os.dup(b.fileno()))
    a.send(b"4,7,100,-;NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus.\n SUBSYSTEM=pci\n DEVICE=+pci:0\n")
    a.send(b"6,8,101,-;NVRM: The NVIDIA GPU 0000:b3:00.0\\x0aNVRM: fallen off the bus\n")
    a.send(b"6,10,102,c;after a gap of one\n")
    got = []
    assert wait_for(lambda: got.extend(src.read(0.05)) or len(got) == 3)
    assert got[0].message == "NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus." and got[0].facility == 0
    assert got[1].message == "NVRM: The NVIDIA GPU 0000:b3:00.0\nNVRM: fallen off the bus"
    assert got[2].seq == 10 and src.lost == 1
    src.close()
    a.close()
    b.close()


def test_the_real_dev_kmsg_is_read_from_its_end():
    """On this machine's kernel: a fresh open sees none of the records already logged; a record
    written after it is read whole, with its header; a second reader (a restart) does not see it."""
    assert os.access("/dev/kmsg", os.R_OK | os.W_OK), "the tests run as root, where /dev/kmsg is readable"
    first = KmsgSource("/dev/kmsg")
    try:
        assert first.read(0) == [], "nothing from before the open"
        marker = f"vigil test marker {uuid.uuid4()}"
        with open("/dev/kmsg", "w") as f:
            f.write(marker + "\n")
        got = []
        assert wait_for(lambda: got.extend(first.read(0.05)) or any(r.message == marker for r in got))
        rec = next(r for r in got if r.message == marker)
        assert rec.facility == 1 and rec.seq is not None  # written by a user process, not the kernel
        second = KmsgSource("/dev/kmsg")
        assert all(r.message != marker for r in second.read(0.2))
        second.close()
    finally:
        first.close()


def test_parse_record_tolerates_unknown_header_fields():
    rec = parse_record(b"3,55,9999,-,caller=T12;NVRM: Xid (PCI:0000:18:00): 13, x\n")
    assert (rec.facility, rec.seq, rec.message) == (0, 55, "NVRM: Xid (PCI:0000:18:00): 13, x")
