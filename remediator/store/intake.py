"""The SQLite ledger's intake: group commit of the alerts of concurrent webhooks.

Concurrent callers queue their alerts; one of them (the leader) writes everything queued with one
fsync, the others sleep on their own lock until their batch is durable, and the leader hands the
lead to the oldest request that arrived meanwhile. Every statement hands the GIL to the request
threads and waits to get it back, so a batch costs as few as possible: the common batch, all new
incidents, is one INSERT in autocommit; any other batch is one transaction (a lookup of the known
incidents, one insert, an update per repeat). A request whose alerts cannot be written fails
alone: when a batch raises, it is written again with one savepoint per request. Only a failing
COMMIT (disk, lock) fails them all."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from remediator.domain.payload import Alert
from remediator.store.statuses import on_resolve
from remediator.store.views import ts

Key = tuple[str, str]  # (fingerprint, startsAt): one incident

_COLUMNS = ("fingerprint, starts_at, alertname, labels, annotations, alert_status, status, reason, received_at,"
            " updated_at, resolved_at")
_INSERT = f"INSERT INTO incidents ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
# A few rows in one statement (each statement hands the GIL to the request threads and waits to
# get it back); many (a storm) row by row, where binding is cheaper than json_each's parsing.
_INSERT_JSON = (f"INSERT INTO incidents ({_COLUMNS}) SELECT value->>0, value->>1, value->>2, value->>3,"
                " value->>4, value->>5, value->>6, value->>7, value->>8, value->>9, value->>10 FROM json_each(?)")
FEW_ROWS = 64


@dataclass(frozen=True)
class Recorded:
    new: int = 0  # new firing incidents
    duplicates: int = 0  # notifications of incidents already known (dedupe hits)
    resolved: int = 0  # incidents marked resolved by this body
    cancelled: int = 0  # incidents whose pending work the resolution cancelled


class Job:
    """One request's alerts; `wake` is held until the job is done or its thread is handed the lead."""

    __slots__ = ("alerts", "done", "error", "now", "result", "wake")

    def __init__(self, alerts: list[Alert], now: dt.datetime) -> None:
        self.alerts, self.now = alerts, now
        self.done, self.result, self.error = False, None, None
        self.wake = threading.Lock()
        self.wake.acquire()


def canonical(d: dict[str, str]) -> str:
    """Labels and annotations as stored: sorted keys, compact (orjson: a storm's hot path)."""
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode()


def _row(key: Key, a: Alert, t: str) -> list:
    """A new incident's columns, in _INSERT's order."""
    firing = a.status == "firing"
    return [*key, a.labels.get("alertname", ""), canonical(a.labels), canonical(a.annotations), a.status,
            "pending" if firing else "resolved", "" if firing else "resolved before Vigil saw it firing", t, t,
            None if firing else t]


Counts = tuple[int, int, list[tuple[Key, Alert]]]  # a request's new, resolved, and repeats of known incidents


def _plan(batch: Sequence[Job], known: set[Key]) -> tuple[list[list], list[Counts]]:
    """The rows of the batch's new incidents, and per request its new and resolved counts and its
    notifications of known incidents. A request sees the incidents the ones before it create as
    known (duplicates), not new; a key twice in one request counts once. `known` grows."""
    rows: list[list] = []
    counts: list[Counts] = []
    for j in batch:
        t, seen, new, resolved, dupes = ts(j.now), set(), 0, 0, []
        for a in j.alerts:
            key = (a.fingerprint, ts(a.starts_at))
            if key in known:
                dupes.append((key, a))
            elif key not in seen:
                seen.add(key)
                rows.append(_row(key, a, t))
                new += a.status == "firing"
                resolved += a.status != "firing"
        known |= seen
        counts.append((new, resolved, dupes))
    return rows, counts


Audit = Callable[[sqlite3.Connection, str, dict, str, int | None, int | None], None]


class GroupCommit:
    def __init__(self, db: sqlite3.Connection, audit: Audit) -> None:
        self.db, self._audit = db, audit
        self.lock = threading.Lock()  # the connection: held by the leader, and by close()
        self._mutex = threading.Lock()  # the queue and the lead
        self._queue: list[Job] = []
        self._leading = False
        self.split = 0  # batches that raised and were written again one request at a time

    def record(self, alerts: list[Alert], now: dt.datetime) -> Recorded:
        """Durable when it returns (or raises this request's own error). A request that arrives
        during a commit waits on its own lock (no herd): the leader wakes each request of its batch
        once, and hands the lead to the oldest request that arrived meanwhile."""
        job = Job(alerts, now)
        with self._mutex:
            self._queue.append(job)
            wait, self._leading = self._leading, True
        if wait:
            job.wake.acquire()
        if not job.done:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    def _lead(self) -> None:
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            with self.lock:
                self.commit(batch)
        finally:
            with self._mutex:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            for j in batch:
                j.wake.release()
            if successor is not None:
                successor.wake.release()

    def commit(self, batch: list[Job]) -> None:
        """Write the batch; each job gets its result or its error, then done."""
        db = self.db
        try:
            if db.in_transaction:  # a ROLLBACK that failed earlier left one open: end it first (if
                db.execute("ROLLBACK")  # this fails too, the batch hears it: 503, and the next retries)
            results = self._all_new(batch)
            if results is None:
                results = self._transaction(batch)
            for j, rec in zip(batch, results, strict=True):
                j.result = rec  # None for a request that failed alone
        except BaseException as exc:
            for j in batch:
                j.error, j.result = j.error or exc, None
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the error above is what the requests hear
                    db.execute("ROLLBACK")
        finally:
            for j in batch:
                j.done = True

    def _all_new(self, batch: Sequence[Job]) -> list[Recorded] | None:
        """The common case, in one statement: every alert of the batch names a new incident and no
        two requests name the same one. The INSERT is its own transaction (autocommit, one fsync)
        and writes nothing when it meets a known incident. None: not so, or anything else went
        wrong (a request that cannot be encoded); the general path finds out and isolates it."""
        try:  # (in autocommit mode: commit() ends a transaction a failed ROLLBACK left open)
            rows, counts = _plan(batch, set())
            if any(dupes for _, _, dupes in counts):
                return None  # an earlier request of the batch creates it: a duplicate for a later one
            self._insert(rows, autocommit=True)
            return [Recorded(new, 0, resolved, 0) for new, resolved, _ in counts]
        except Exception:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        return None

    def _insert(self, rows: list[list], *, autocommit: bool = False) -> None:
        if len(rows) <= FEW_ROWS and not any("\x00" in r[0] or "\x00" in r[2] for r in rows):
            # (SQLite's ->> cuts a string at an escaped NUL: such rows are bound, not read from JSON)
            self.db.execute(_INSERT_JSON, (orjson.dumps(rows),))
        elif autocommit:  # row by row: in one transaction, not one each
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(_INSERT, rows)
            self.db.execute("COMMIT")
        else:
            self.db.executemany(_INSERT, rows)

    def _transaction(self, batch: Sequence[Job]) -> list[Recorded | None]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            results: list[Recorded | None] = list(self._write(batch))
        except Exception:  # some request's alerts: find which, one savepoint each
            self.split += 1
            db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            results = self._one_by_one(batch)
        db.execute("COMMIT")
        return results

    def _one_by_one(self, batch: Sequence[Job]) -> list[Recorded | None]:
        results: list[Recorded | None] = []
        for j in batch:
            self.db.execute("SAVEPOINT job")
            try:
                results.append(self._write([j])[0])
            except Exception as exc:
                self.db.execute("ROLLBACK TO job")
                j.error = exc
                results.append(None)
            self.db.execute("RELEASE job")
        return results

    def _write(self, batch: Sequence[Job]) -> list[Recorded]:
        """The batch as if its requests were written one after the other."""
        rows, counts = _plan(batch, self._known({a.fingerprint for j in batch for a in j.alerts}))
        if rows:
            self._insert(rows)
        return [self._duplicates(dupes, new, resolved, j.now)
                for j, (new, resolved, dupes) in zip(batch, counts, strict=True)]

    def _known(self, fingerprints: set[str]) -> set[Key]:
        arg = orjson.dumps(sorted(fingerprints)).decode()  # one query, any count
        return {(r[0], r[1]) for r in self.db.execute(
            "SELECT fingerprint, starts_at FROM incidents WHERE fingerprint IN (SELECT value FROM json_each(?))",
            (arg,))}

    def _duplicates(self, dupes: list[tuple[Key, Alert]], new: int, resolved: int, now: dt.datetime) -> Recorded:
        """Notifications of known incidents: counted; a resolved one resolves its incident and
        cancels the work still pending on it."""
        db, t, cancelled = self.db, ts(now), 0
        for (fp, starts), a in dupes:
            db.execute("UPDATE incidents SET notifications = notifications + 1 WHERE fingerprint=? AND"
                       " starts_at=?", (fp, starts))
            if a.status == "firing":
                continue  # a repeat, a retry or the other HA peer: nothing new
            row = db.execute("SELECT id, alert_status, status FROM incidents WHERE fingerprint=? AND"
                             " starts_at=?", (fp, starts)).fetchone()
            if row["alert_status"] == "resolved":
                continue
            resolved += 1
            cancelled += self._resolve(row, t)
        return Recorded(new, len(dupes), resolved, cancelled)

    def _resolve(self, row: sqlite3.Row, t: str) -> bool:
        db = self.db
        db.execute("UPDATE incidents SET alert_status='resolved', resolved_at=?, updated_at=? WHERE id=?",
                   (t, t, row["id"]))
        db.execute("UPDATE actions SET state='cancelled', finished_at=?, result=? WHERE incident_id=?"
                   " AND state='planned'", (t, json.dumps({"detail": "the alert resolved"}), row["id"]))
        states = {r[0] for r in db.execute("SELECT state FROM actions WHERE incident_id=?", (row["id"],))}
        after = on_resolve(row["status"], states)
        if after is None:
            return False
        status, reason, detail = after
        db.execute("UPDATE incidents SET status=?, reason=?, detail=?, waiting_since=NULL, updated_at=? WHERE id=?",
                   (status, reason, detail, t, row["id"]))
        self._audit(db, status if status == "cancelled" else "resolved_midway", {"reason": detail}, t, row["id"],
                    None)
        return status == "cancelled"
