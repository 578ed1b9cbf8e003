"""Latched faults: pending until a GPU reset or a reboot, kept across exporter restarts in the
--state-dir file, keyed by the boot ID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from exporters.gpu.exporter import FaultStateConfig
from exporters.gpu.simulated import SimulatedNVML

from .conftest import free_port, make_exporter, one, parse, pick, scrape, wait_for

GPU3 = {"gpu": "3", "uuid": "GPU-5a1e0000-0000-4000-8000-000000000003"}
XID79 = {**GPU3, "kind": "xid", "xid": "79"}


@pytest.fixture
def boot(tmp_path):
    path = tmp_path / "boot_id"
    path.write_text(str(uuid.uuid4()) + "\n")
    return path


def start(tmp_path, boot, sim=None):
    sim = sim or SimulatedNVML(8)
    return sim, make_exporter(sim, fault_state=FaultStateConfig(str(tmp_path / "state"), str(boot)))


def pending(exp) -> dict[frozenset, float]:
    return pick(scrape(exp), "gpu_fault_pending")


def test_an_xid_that_needs_action_stays_pending_and_is_saved(tmp_path, boot):
    sim, exp = start(tmp_path, boot)
    try:
        sim.inject(3, "xid", 79)
        sim.inject(4, "xid", 13)  # an application XID: counted, never latched
        assert wait_for(lambda: pending(exp))
        s = scrape(exp)
        assert one(s, "gpu_fault_pending", **XID79) == 1
        assert abs(one(s, "gpu_fault_pending_since_timestamp_seconds", **XID79) - time.time()) < 30
        assert len(pick(s, "gpu_fault_pending")) == 1
        assert one(s, "gpu_exporter_fault_state_persisted") == 1
        saved = json.loads((tmp_path / "state/faults.json").read_text())
        assert saved["boot_id"] == boot.read_text().strip()
        assert [(f["gpu"], f["kind"], f["xid"]) for f in saved["faults"]] == [("3", "xid", "79")]
    finally:
        exp.stop()


def test_a_restarted_exporter_still_exports_the_pending_xid(tmp_path, boot):
    sim, exp = start(tmp_path, boot)
    sim.inject(3, "xid", 79)
    assert wait_for(lambda: pending(exp))
    since = one(scrape(exp), "gpu_fault_pending_since_timestamp_seconds", **XID79)
    exp.stop()
    sim2, exp2 = start(tmp_path, boot)  # a new process: a fresh simulated NVML, the same node and boot
    try:
        s = scrape(exp2)
        assert one(s, "gpu_fault_pending", **XID79) == 1
        assert one(s, "gpu_fault_pending_since_timestamp_seconds", **XID79) == since
        assert one(s, "gpu_recovery_action", **GPU3) == 2  # the GPU was not reset: it still asks for a reboot
        assert sim2.faults()["3"]["xids"] == [79]
    finally:
        exp2.stop()


@pytest.mark.parametrize("reset", ["clear", "reset"])
def test_a_gpu_reset_clears_the_fault(tmp_path, boot, reset):
    sim, exp = start(tmp_path, boot)
    try:
        sim.inject(3, "xid", 79)
        sim.inject(5, "xid", 48)
        assert wait_for(lambda: len(pending(exp)) == 2)
        sim.inject(3, reset)  # the recovery action goes back to none
        assert wait_for(lambda: len(pending(exp)) == 1)
        assert one(scrape(exp), "gpu_fault_pending", gpu="5", xid="48") == 1
        saved = json.loads((tmp_path / "state/faults.json").read_text())
        assert [f["gpu"] for f in saved["faults"]] == ["5"]
    finally:
        exp.stop()


def test_a_simulated_reboot_clears_every_fault(tmp_path, boot):
    sim, exp = start(tmp_path, boot)
    try:
        sim.inject(3, "xid", 79)
        sim.inject(6, "lost")
        assert wait_for(lambda: len(pending(exp)) == 2)
        before = sim.boot_id
        sim.reboot()
        assert sim.boot_id != before
        assert wait_for(lambda: not pending(exp))
        assert sim.faults() == {}
    finally:
        exp.stop()


def test_a_new_boot_id_drops_the_saved_faults(tmp_path, boot):
    sim, exp = start(tmp_path, boot)
    sim.inject(3, "xid", 79)
    assert wait_for(lambda: pending(exp))
    exp.stop()
    boot.write_text(str(uuid.uuid4()))  # the node rebooted while the exporter was down
    sim2, exp2 = start(tmp_path, boot)
    try:
        assert not pending(exp2)
        assert sim2.faults() == {}
        assert one(scrape(exp2), "gpu_recovery_action", **GPU3) == 0
    finally:
        exp2.stop()


def test_a_lost_gpu_stays_pending_across_a_restart_until_it_answers_again(tmp_path, boot):
    sim, exp = start(tmp_path, boot)
    sim.inject(6, "lost")
    assert wait_for(lambda: pending(exp))
    assert one(scrape(exp), "gpu_fault_pending", gpu="6", kind="lost", xid="") == 1
    exp.stop()
    sim2, exp2 = start(tmp_path, boot)
    try:
        s = scrape(exp2)
        assert one(s, "gpu_fault_pending", gpu="6", kind="lost", xid="") == 1
        assert not pick(s, "gpu_accessible", gpu="6")  # NVML cannot even name it after the restart
        sim2.inject(6, "clear")
        exp2.session.mark_down("re-enumerate")  # the reset GPU is found again at the next init
        assert wait_for(lambda: not pending(exp2))
    finally:
        exp2.stop()


def test_an_unwritable_state_dir_keeps_faults_in_memory_and_says_so(tmp_path, boot):
    (tmp_path / "state").write_text("a file, not a directory")
    sim, exp = start(tmp_path, boot)
    try:
        sim.inject(3, "xid", 79)
        assert wait_for(lambda: pending(exp))
        assert one(scrape(exp), "gpu_exporter_fault_state_persisted") == 0
    finally:
        exp.stop()


def test_a_corrupt_state_file_starts_empty(tmp_path, boot):
    (tmp_path / "state").mkdir()
    (tmp_path / "state/faults.json").write_text("{not json")
    sim, exp = start(tmp_path, boot)
    try:
        assert not pending(exp)
        sim.inject(3, "xid", 79)
        assert wait_for(lambda: pending(exp))
        assert one(scrape(exp), "gpu_exporter_fault_state_persisted") == 1
    finally:
        exp.stop()


def _serve(state: str, boot: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporters.gpu.cli", "--listen", f"127.0.0.1:{port}",
                             "--backend", "simulated", "--kernel-log", "", "--state-dir", state,
                             "--boot-id-file", boot], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(f"{url}/healthz", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stdout.read())


def _pending(url: str) -> dict[frozenset, float]:
    return pick(parse(requests.get(f"{url}/metrics", timeout=10).text), "gpu_fault_pending")


def test_the_exporter_process_restarted_with_the_same_state_dir_exports_xid_79(tmp_path, boot):
    state = str(tmp_path / "state")
    proc, url = _serve(state, str(boot))
    try:
        r = requests.post(f"{url}/simulate", json={"gpu": 3, "fault": "xid", "xid": 79}, timeout=10)
        assert r.status_code == 200, r.text
        assert wait_for(lambda: _pending(url))
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    proc, url = _serve(state, str(boot))
    try:
        assert list(_pending(url).items()) == [(frozenset(XID79.items()), 1.0)]
        r = requests.post(f"{url}/simulate", json={"fault": "reboot"}, timeout=10)  # the simulated node reboots
        assert r.status_code == 200 and r.json()["faults"] == {}, r.text
        assert wait_for(lambda: not _pending(url))
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_the_fast_path_keeps_an_xid_alert_while_its_fault_is_pending(tmp_path, boot):
    from exporters.gpu.fastpath import PushConfig

    sim = SimulatedNVML(8)
    push = PushConfig(urls=[f"http://127.0.0.1:{free_port()}"], node="n1", xid_window=0.3, resend=0.2, poll=0.05)
    exp = make_exporter(sim, push=push, fault_state=FaultStateConfig(str(tmp_path / "state"), str(boot)))

    def xid_alerts(ended: bool) -> list:
        return [a for a in list(exp.pusher._active.values())
                if a.labels["alertname"] == "GpuXidCritical" and a.ended == ended]
    try:
        sim.inject(3, "xid", 79)
        assert wait_for(lambda: xid_alerts(False))
        time.sleep(1.0)  # past the window: still firing, as the fault is pending
        assert xid_alerts(False) and not xid_alerts(True)
        sim.inject(3, "reset")
        assert wait_for(lambda: not xid_alerts(False))
    finally:
        exp.stop()
