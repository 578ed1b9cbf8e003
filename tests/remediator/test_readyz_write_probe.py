"""/readyz writes the ledger (a bounded, rate-limited probe), not only reads it: a remediator whose
ledger cannot be written (here: its file size limit at 0, as a full disk answers every write) turns
503 and comes back to 200 once it can write again."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest
import requests
import yaml

from remediator.store.probe import Inconclusive, WriteProbe
from tests.k8s.controlplane import free_port, wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_probe_writes_at_most_once_per_interval_and_remembers_the_answer():
    clock, writes, fail = Clock(), [], [OSError("disk full")]

    def write() -> None:
        writes.append(clock.t)
        if fail:
            raise fail[0]

    probe = WriteProbe(write, interval=5.0, clock=clock)
    for _ in range(10):
        with pytest.raises(OSError, match="disk full"):
            probe.check()
    assert writes == [0.0]
    fail.clear()
    clock.t = 4.9
    with pytest.raises(OSError):
        probe.check()  # still the last answer: no second write within the interval
    clock.t = 5.0
    probe.check()
    assert writes == [0.0, 5.0]
    fail.append(Inconclusive("database is locked"))
    clock.t = 10.0
    probe.check()  # inconclusive: the last answer (ok) stands, and the next check tries again
    clock.t = 10.1
    fail.clear()
    probe.check()
    assert writes == [0.0, 5.0, 10.0, 10.1]


def _ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead


def _readyz(url: str) -> tuple[int, dict]:
    try:
        r = requests.get(f"{url}/readyz", timeout=5)
        return r.status_code, r.json()
    except requests.ConnectionError:
        return 0, {}


@pytest.mark.integration
def test_readyz_is_503_while_the_ledger_cannot_be_written_and_200_after(tmp_path):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({"auth": {"bearer_token_env": "VIGIL_PROBE_TOKEN"},
                                   "ledger": {"path": str(tmp_path / "ledger.db")}, "safety": {"dry_run": True}}))
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                             url.removeprefix("http://")], env={**os.environ, "VIGIL_PROBE_TOKEN": "t" * 24},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigxfsz)
    try:
        wait_until(lambda: _readyz(url)[0] == 200, 60, what="ready")
        _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, hard))  # every write to a file fails
        status, body = wait_until(lambda: (r := _readyz(url))[0] == 503 and r, 30, what="503 while unwritable")
        assert body["checks"]["ledger"].startswith("error:"), body
        assert requests.get(f"{url}/healthz", timeout=5).ok  # alive, only not ready
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        wait_until(lambda: _readyz(url)[0] == 200, 30, what="200 once writable again")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]
