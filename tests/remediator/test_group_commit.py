"""The group commit writes a batch of requests in a few statements (a batch of new incidents in
one); the result must be what writing them one after the other gives: the same answer to each
request and the same rows, also when requests of one batch repeat, resolve or poison each other's
incidents."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import Alert
from remediator.store.intake import FEW_ROWS, Job
from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import wait_until

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
POISON = {"alertname": "X", "node": "bad\ud800"}  # cannot be stored (a lone surrogate)

alerts = st.builds(
    lambda fp, start, firing, poison: Alert("firing" if firing else "resolved",
                                            POISON if poison else {"alertname": "A", "fp": fp}, {"s": "x"},
                                            T0 + dt.timedelta(minutes=start), T0, fp),
    st.sampled_from(["f0", "f1", "f2", "f3"]), st.integers(0, 1), st.booleans(),
    st.integers(0, 9).map(lambda n: n == 0))
requests = st.lists(st.lists(alerts, min_size=1, max_size=4), min_size=1, max_size=8)


def _dump(path: str) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("incidents", "actions", "audit")}
    finally:
        db.close()


def _ledger(path: str, before: list[list[Alert]]) -> SQLiteLedger:
    """A ledger that already knows some incidents, one of them acting on a planned action."""
    lg = SQLiteLedger(path)
    for alerts_ in before:
        lg.record(alerts_, T0)
    due = lg.due(T0)
    if due:
        lg.save_decision(due[0].id, Decision("act", "r", actions=(PlannedAction("cordon_node", "n1", {}),)), T0)
    return lg


def _outcome(job: Job) -> object:
    return type(job.error).__name__ if job.error is not None else job.result


def _compare(d, before: list[list[Alert]], batch: list[list[Alert]]) -> None:
    one, all_ = _ledger(str(d / "one.db"), before), _ledger(str(d / "all.db"), before)
    singly = [Job(list(a), T0 + dt.timedelta(seconds=k)) for k, a in enumerate(batch)]
    together = [Job(list(a), T0 + dt.timedelta(seconds=k)) for k, a in enumerate(batch)]
    for job in singly:  # the reference: the general path (one transaction), one request at a time
        try:
            job.result = one._intake._transaction([job])[0]
        except Exception as exc:
            job.error = exc
    all_._intake.commit(together)
    if not any(a.labels is POISON for alerts_ in batch for a in alerts_):
        assert all_._intake.split == 0  # written in one pass, not by the fallback
    assert [_outcome(j) for j in together] == [_outcome(j) for j in singly]
    assert all(j.done for j in together)
    one.close()
    all_.close()
    assert _dump(str(d / "all.db")) == _dump(str(d / "one.db"))


@settings(max_examples=150, deadline=None)
@given(before=st.lists(st.lists(alerts.filter(lambda a: a.labels is not POISON), min_size=1, max_size=3),
                       max_size=3),
       batch=requests)
def test_a_batch_is_written_as_its_requests_one_after_the_other(tmp_path_factory, before, batch):
    _compare(tmp_path_factory.mktemp("gc"), before, batch)


def _many(prefix: str, n: int, status: str = "firing") -> list[Alert]:
    return [Alert(status, {"alertname": "A", "i": f"{prefix}{i}"}, {}, T0, T0, f"{prefix}{i:x}") for i in range(n)]


@pytest.mark.parametrize("batch", [
    pytest.param([_many("a", 300), _many("b", 5)], id="all-new"),
    pytest.param([_many("a", 300), _many("a", 100, "resolved")], id="the second request resolves the first's"),
    pytest.param([_many("c", 200), _many("d", 70)], id="one request repeats a known incident"),
    pytest.param([_many("a", 200), [*_many("e", 80), Alert("firing", POISON, {}, T0, T0, "bad")]], id="poisoned"),
])
def test_a_storm_sized_batch_too(tmp_path, batch):
    """Past FEW_ROWS the rows are bound one by one in a transaction (the other insert path)."""
    assert max(len(a) for a in batch) > FEW_ROWS
    _compare(tmp_path, [_many("c", 1), _many("d", 1)], batch)


def test_waiting_requests_share_the_next_commit_and_each_gets_its_own_answer(tmp_path):
    """Requests that arrive during a commit are written together by the first of them to wake."""
    lg = SQLiteLedger(str(tmp_path / "l.db"))
    gc, n = lg._intake, 50
    commits: list[int] = []
    real = gc.commit
    gc.commit = lambda batch: (commits.append(len(batch)), real(batch))[1]
    answers: dict[int, object] = {}
    with gc._mutex:
        gc._leading = True  # a commit in progress
    threads = [threading.Thread(target=lambda k=k: answers.__setitem__(k, lg.record(
        [Alert("firing", {"alertname": "A", "k": str(k % 10)}, {}, T0, T0, f"fp{k % 10}")], T0))) for k in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: len(gc._queue) == n, 30, what="all requests queued")
    gc._queue[0].wake.release()  # that commit ends: it hands the lead to the oldest request waiting
    for t in threads:
        t.join(30)
    assert commits == [n] and gc.split == 0  # one commit, written in one pass
    assert sum(a.new for a in answers.values()) == 10 and sum(a.duplicates for a in answers.values()) == 40
    lg.close()


def test_the_wal_is_checkpointed_in_the_background(tmp_path):
    """Intake's connection never checkpoints (its autocheckpoint is off); the checkpointer thread
    copies the WAL into the database file."""
    path = tmp_path / "l.db"
    lg = SQLiteLedger(str(path))
    assert lg._intake.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    size = path.stat().st_size
    lg.record(_many("w", 2000), T0)
    wait_until(lambda: path.stat().st_size > size + 100_000, 30, what="the WAL copied into the database file")
    lg.close()
