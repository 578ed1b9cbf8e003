"""Adversarial: after a batch whose COMMIT fails and whose ROLLBACK also fails, the intake
connection is left inside an open transaction. The general path then refuses every batch
(BEGIN IMMEDIATE: "cannot start a transaction within a transaction": 503, correct), but the fast
path's "autocommit" INSERT silently runs inside that open transaction and `record` returns a
result: the webhook answers 200 for alerts that are not committed (not visible to any other
connection, lost on a crash or on the next ROLLBACK)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3

from remediator.domain.payload import ZERO_TIME, Alert
from remediator.store.ledger import SQLiteLedger

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def _alert(fp: str, status: str = "firing") -> Alert:
    return Alert(status, {"alertname": "A", "fp": fp}, {}, T0, ZERO_TIME, fp)


class _FailingEnd:
    """The intake connection, except that the next COMMIT fails once and every ROLLBACK fails
    (a disk that errors on the journal's undo; the exact cause does not matter)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.commit_failures = db, 1

    def execute(self, sql: str, *args):
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error (injected, ROLLBACK)")
        if sql == "COMMIT" and self.commit_failures:
            self.commit_failures -= 1
            raise sqlite3.OperationalError("disk I/O error (injected, COMMIT)")
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, *args):
        return self.db.executemany(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction


def _committed(path: str, fp: str) -> bool:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM incidents WHERE fingerprint=?", (fp,)).fetchone()[0] == 1
    finally:
        db.close()


def test_acknowledged_alerts_are_committed_after_a_failed_rollback(tmp_path):
    path = str(tmp_path / "ledger.db")
    lg = SQLiteLedger(path)
    try:
        lg.record([_alert("e0")], T0)  # a known incident: the next body takes the general path
        gc = lg._intake
        real = gc.db
        gc.db = _FailingEnd(real)
        with contextlib.suppress(sqlite3.Error):  # 503 for this one: fine
            lg.record([_alert("e0", "resolved")], T0)  # COMMIT fails, then ROLLBACK fails
        try:
            rec = lg.record([_alert("a1")], T0)  # a new incident: the fast path
        except sqlite3.Error:
            return  # refusing (503) is correct: Alertmanager resends
        assert rec.new == 1
        # it was acknowledged: it must be durable, i.e. committed and visible to another connection
        assert not real.in_transaction, "acknowledged while the intake connection is inside a transaction"
        assert _committed(path, "a1"), "acknowledged alert is not committed"
    finally:
        lg._intake.db = lg._intake.db.db if isinstance(lg._intake.db, _FailingEnd) else lg._intake.db
        lg.close()


def test_the_connection_recovers_once_rollback_works_again(tmp_path):
    """The leftover transaction is rolled back before the next batch: once the disk answers again,
    intake records (and commits) without a restart."""
    path = str(tmp_path / "ledger.db")
    lg = SQLiteLedger(path)
    try:
        lg.record([_alert("e0")], T0)
        gc = lg._intake
        real = gc.db
        gc.db = _FailingEnd(real)
        with contextlib.suppress(sqlite3.Error):
            lg.record([_alert("e0", "resolved")], T0)  # COMMIT fails, then ROLLBACK fails
        assert real.in_transaction
        gc.db = real  # the disk is back
        assert lg.record([_alert("a2")], T0).new == 1
        assert not real.in_transaction and _committed(path, "a2")
        assert lg.record([_alert("e0", "resolved")], T0).resolved == 1  # the failed resolve, resent
    finally:
        lg._intake.db = real
        lg.close()
