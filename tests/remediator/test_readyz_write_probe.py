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
        _, body = wait_until(lambda: (r := _readyz(url))[0] == 503 and r, 30, what="503 while unwritable")
        assert body["checks"]["ledger"].startswith("error:"), body
        assert requests.get(f"{url}/healthz", timeout=5).ok  # alive, only not ready
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        wait_until(lambda: _readyz(url)[0] == 200, 30, what="200 once writable again")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]


def test_a_full_disk_is_the_ledger_unavailable_not_a_failed_incident(tmp_path):
    """The engine's writes on a disk that cannot be written raise LedgerUnavailable (the engine leaves
    the incident to retry), and once the disk can be written the incident is still pending and its
    decision is stored. In a child process: the file size limit applies to the whole process."""
    code = f"""
import datetime as dt, json, resource, signal
from remediator.domain.models import Decision
from remediator.domain.payload import parse
from remediator.store.ledger import LedgerUnavailable, SQLiteLedger
from tests.remediator.payloads import alert, body, xid_labels
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
now = dt.datetime.now(dt.UTC)
lg = SQLiteLedger({str(tmp_path / "ledger.db")!r})
lg.record(parse(json.dumps(body(alert(xid_labels("n1")))).encode()).alerts, now)
inc = lg.due(now)[0]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
try:
    lg.save_decision(inc.id, Decision("no_match", reason="no_match"), now)
    print("stored")
except LedgerUnavailable as exc:
    print("unavailable", "full" in str(exc) or "i/o" in str(exc).lower() or "disk" in str(exc).lower())
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
print(lg.get_incident(inc.id)["status"])
lg.save_decision(inc.id, Decision("no_match", reason="no_match"), now)
print(lg.get_incident(inc.id)["status"])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["unavailable", "True", "pending", "ignored"], r.stdout
