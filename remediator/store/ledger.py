"""The durable ledger: incidents keyed by (fingerprint, startsAt), their decisions, actions and the
audit trail. Alertmanager delivers at least once, resends whole groups, and HA peers send
duplicates minutes apart, so idempotency lives here, on disk, not in a cache.

`Ledger` is the interface the engine uses; `SQLiteLedger` (one WAL file) is the embedded default.
A Kubernetes-backed ledger (custom resources plus a Lease for several replicas) implements the same
methods; the decision core never sees it.

Durability: intake commits with synchronous=FULL, so what got a 2xx survives a power cut, and
concurrent webhooks share one commit (group commit: each waits for the commit that holds its
alerts). The engine's own writes use synchronous=NORMAL: a power cut can lose only its latest
bookkeeping, which the engine redoes, and every action is idempotent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from remediator.domain.models import Decision, Incident, PastAction
from remediator.domain.payload import Alert
from remediator.domain.queue import SEVERITY_RANK, UNKNOWN_SEVERITY
from remediator.domain.repair import REPAIR_ACTIONS, RepairRecord
from remediator.store.checkpoint import Checkpointer
from remediator.store.intake import GroupCommit, Recorded
from remediator.store.probe import Inconclusive, WriteProbe
from remediator.store.statuses import ACTION_STATE_OF, DECIDABLE, STATUS_OF, final_status
from remediator.store.views import LedgerViews, bookkeeping_time, from_ts, ts


class LedgerUnavailable(Exception):
    """The backend could not be read or written (a network backend down, a disk error): not the
    caller's fault, and temporary; intake answers 503 so that Alertmanager resends."""


@dataclass(frozen=True)
class ActionRow:
    id: int
    incident_id: int
    seq: int
    rule: str
    type: str
    target: str
    params: dict[str, Any]
    state: str


WRITE_PROBE_INTERVAL = 5.0  # seconds between /readyz's write probes of the ledger
DUE_BATCH = 200  # incidents decided per engine tick: a backlog never makes one tick (or intake) slow


class Ledger(Protocol):
    uid: str  # this ledger's identity, in names that must not collide with another ledger's (Events)

    def record(self, alerts: Iterable[Alert], now: dt.datetime) -> Recorded: ...
    def due(self, now: dt.datetime, limit: int = DUE_BATCH,
            on_unreadable: Callable[[int, Exception], None] | None = None,
            wake_waiting: bool = False) -> list[Incident]: ...
    def fail_incident(self, incident_id: int, stage: str, exc: BaseException, now: dt.datetime) -> None: ...
    def next_wake(self) -> dt.datetime | None: ...
    def save_decision(self, incident_id: int, decision: Decision, now: dt.datetime) -> list[int]: ...
    def save_decisions(self, decided: list[tuple[int, Decision]], now: dt.datetime) -> dict[int, list[int]]: ...
    def requeue(self, incident_id: int, decision: Decision, now: dt.datetime) -> None: ...
    def waiting(self) -> list[dict]: ...
    def firing(self) -> list[Incident]: ...
    def claim_action(self, action_id: int, now: dt.datetime) -> ActionRow | None: ...
    def finish_action(self, action_id: int, state: str, result: dict, now: dt.datetime) -> None: ...
    def incomplete_actions(self) -> dict[int, list[int]]: ...
    def history(self, since: dt.datetime) -> list[PastAction]: ...
    def repairs(self, since: dt.datetime) -> list[RepairRecord]: ...
    def append_action(self, incident_id: int, rule: str, type_: str, target: str, params: dict,
                      now: dt.datetime) -> int: ...
    def set_verification(self, incident_id: int, result: str, detail: str, now: dt.datetime) -> None: ...
    def resolved_followups(self) -> list[dict]: ...
    def mark_after_resolve(self, incident_id: int, outcome: str, now: dt.datetime) -> None: ...
    def get_state(self, key: str) -> str | None: ...
    def set_state(self, key: str, value: str | None) -> None: ...
    def audit(self, event: str, detail: dict, now: dt.datetime, *, incident_id: int | None = None,
              action_id: int | None = None) -> None: ...
    def list_incidents(self, *, status: str | None, alertname: str | None, limit: int,
                       offset: int) -> tuple[list[dict], int]: ...
    def get_incident(self, incident_id: int) -> dict | None: ...
    def counts_by_status(self) -> dict[str, int]: ...
    def ping(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    alert_status TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    rule TEXT,
    not_before TEXT,
    trace TEXT NOT NULL DEFAULT '[]',
    notifications INTEGER NOT NULL DEFAULT 1,
    verification TEXT NOT NULL DEFAULT '',
    after_resolve TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    resolved_at TEXT,
    waiting_since TEXT,
    UNIQUE (fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status, not_before);
CREATE INDEX IF NOT EXISTS incidents_alertname ON incidents (alertname);
CREATE INDEX IF NOT EXISTS incidents_followup ON incidents (id) WHERE alert_status='resolved' AND after_resolve='';
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    seq INTEGER NOT NULL,
    rule TEXT NOT NULL,
    type TEXT NOT NULL,
    target TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    workload TEXT NOT NULL DEFAULT '',
    amount REAL NOT NULL DEFAULT 0,
    planned_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    UNIQUE (incident_id, seq)
);
CREATE INDEX IF NOT EXISTS actions_planned ON actions (planned_at);
CREATE INDEX IF NOT EXISTS actions_state ON actions (state);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    incident_id INTEGER,
    action_id INTEGER,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _incident(row: sqlite3.Row) -> Incident:
    return Incident(fingerprint=row["fingerprint"], starts_at=from_ts(row["starts_at"]),
                    labels=json.loads(row["labels"]), annotations=json.loads(row["annotations"]),
                    alert_status=row["alert_status"], id=row["id"], received_at=bookkeeping_time(row["received_at"]),
                    waiting_since=bookkeeping_time(row["waiting_since"]))


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since the ledger's first release (a ledger file outlives upgrades)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(incidents)")}
    if "waiting_since" not in have:
        db.execute("ALTER TABLE incidents ADD COLUMN waiting_since TEXT")


# the queue's order (remediator.domain.queue) in SQL: the head of a long queue is read first
_SEVERITY_ORDER = ("CASE lower(json_extract(labels, '$.severity')) "
                   + " ".join(f"WHEN '{k}' THEN {v}" for k, v in SEVERITY_RANK.items())
                   + f" ELSE {UNKNOWN_SEVERITY} END")


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class SQLiteLedger(LedgerViews):
    def __init__(self, path: str) -> None:
        self.path = path
        intake = _connect(path, "FULL")
        intake.executescript(_SCHEMA)
        _migrate(intake)
        intake.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job, off the webhooks' path
        # ids restart at 1 with a new file: the uid tells its incident 1 from an older ledger's
        intake.execute("INSERT OR IGNORE INTO state (key, value) VALUES ('ledger_uid', ?)", (uuid.uuid4().hex,))
        self.uid: str = intake.execute("SELECT value FROM state WHERE key='ledger_uid'").fetchone()[0]
        self._intake = GroupCommit(intake, self._audit)
        self._db = _connect(path, "NORMAL")
        self._lock = threading.Lock()
        self._checkpoint = Checkpointer(path)
        self._write_probe = WriteProbe(self._probe_write, interval=WRITE_PROBE_INTERVAL)

    def close(self) -> None:
        self._checkpoint.close()
        with self._intake.lock, self._lock:
            self._intake.db.close()
            self._db.close()

    def _tx(self):
        return _Tx(self._db, self._lock, "BEGIN IMMEDIATE")

    def _read(self):
        """A read: a deferred transaction, which in WAL mode never takes the write lock, so the
        engine's reads never make a webhook's commit wait."""
        return _Tx(self._db, self._lock, "BEGIN")

    # ---- intake ----------------------------------------------------------------------------

    def record(self, alerts: Iterable[Alert], now: dt.datetime) -> Recorded:
        """Durable when it returns; concurrent callers share one commit (`store/intake.py`)."""
        return self._intake.record(list(alerts), now)

    # ---- the engine's side -----------------------------------------------------------------

    def due(self, now: dt.datetime, limit: int = DUE_BATCH,
            on_unreadable: Callable[[int, Exception], None] | None = None,
            wake_waiting: bool = False) -> list[Incident]:
        """At most `limit` incidents to decide: new ones, oldest first (a queue never starves them);
        waiting ones whose time came (the longest unchecked first, so every one is decided again
        within a few passes, and max_wait reaches the tail too); with `wake_waiting` (what they wait
        for may have changed) the head of the queue (severity, then the oldest alert); then
        deferred ones whose time came. A row that cannot be read back goes to `on_unreadable`
        (default: marked failed), so it can never block the ones after it."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM incidents WHERE status='pending' ORDER BY id LIMIT ?",
                              (limit,)).fetchall()
            if len(rows) < limit:
                rows += db.execute("SELECT * FROM incidents WHERE status='waiting' AND not_before <= ?"
                                   " ORDER BY not_before LIMIT ?", (ts(now), limit - len(rows))).fetchall()
            if wake_waiting and len(rows) < limit:
                seen = {r["id"] for r in rows}
                head = db.execute(f"SELECT * FROM incidents WHERE status='waiting' ORDER BY {_SEVERITY_ORDER},"
                                  " starts_at, id LIMIT ?", (limit - len(rows),)).fetchall()
                rows += [r for r in head if r["id"] not in seen]
            if len(rows) < limit:
                rows += db.execute("SELECT * FROM incidents WHERE status='deferred' AND not_before <= ?"
                                   " ORDER BY not_before LIMIT ?", (ts(now), limit - len(rows))).fetchall()
        out, broken = [], []
        for r in rows:
            try:
                out.append(_incident(r))
            except Exception as exc:
                broken.append((r["id"], exc))
        for incident_id, exc in broken:
            if on_unreadable is not None:
                on_unreadable(incident_id, exc)
            else:
                self.fail_incident(incident_id, "read", exc, now)
        return out

    def fail_incident(self, incident_id: int, stage: str, exc: BaseException, now: dt.datetime) -> None:
        """Processing this incident raised: record the exception on it and in the audit, and take
        it out of the engine's queue (status failed, reason internal_error)."""
        t, detail = ts(now), f"{type(exc).__name__}: {exc}"[:1000]
        with self._tx() as db:
            db.execute("UPDATE incidents SET status='failed', reason='internal_error', detail=?, updated_at=?"
                       " WHERE id=?", (detail, t, incident_id))
            db.execute("UPDATE actions SET state=CASE state WHEN 'running' THEN 'failed' ELSE 'cancelled' END,"
                       " finished_at=?, result=? WHERE incident_id=? AND state IN ('planned', 'running')",
                       (t, json.dumps({"detail": detail, "reason": "internal_error"}), incident_id))
            self._audit(db, "internal_error", {"stage": stage, "exception": type(exc).__name__,
                                               "message": str(exc)[:1000]}, t, incident_id, None)

    def next_wake(self) -> dt.datetime | None:
        with self._read() as db:
            row = db.execute("SELECT MIN(not_before) AS t FROM incidents WHERE status IN ('deferred','waiting')"
                             ).fetchone()
        return from_ts(row["t"])

    def waiting(self) -> list[dict]:
        """Every waiting incident (summary, waiting_since, not_before), for the queue; the engine orders it."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM incidents WHERE status='waiting'").fetchall()
        return [self._summary(r) | {"waiting_since": r["waiting_since"], "not_before": r["not_before"]} for r in rows]

    def firing(self) -> list[Incident]:
        """Every incident whose alert is firing as far as Vigil knows (the reconcile compares them)."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM incidents WHERE alert_status='firing'").fetchall()
        return [_incident(r) for r in rows]

    def requeue(self, incident_id: int, decision: Decision, now: dt.datetime) -> None:
        """A planned chain stopped at its admission by a rail that can clear: the rest of the chain
        (and the action being admitted, `running` when it was resumed after a restart: it is not
        executing, its chain runs one action at a time) is cancelled and the incident waits in the
        queue, decided again from the world then."""
        t = ts(now)
        with self._tx() as db:
            db.execute("UPDATE actions SET state='cancelled', finished_at=?, result=? WHERE incident_id=? AND"
                       " state IN ('planned','running')", (t, json.dumps({"detail": f"waiting: {decision.detail}",
                                                           "reason": decision.reason}), incident_id))
            db.execute("UPDATE incidents SET status='waiting', reason=?, detail=?, not_before=?, trace=?,"
                       " waiting_since=COALESCE(waiting_since, ?), updated_at=? WHERE id=? AND status IN"
                       " ('acting','waiting')",
                       (decision.reason, decision.detail, ts(decision.not_before or now),
                        json.dumps(list(decision.trace)), t, t, incident_id))
            self._audit(db, "waiting", {"reason": decision.reason, "detail": decision.detail, "at": "admission"},
                        t, incident_id, None)

    def save_decision(self, incident_id: int, decision: Decision, now: dt.datetime) -> list[int]:
        """Store the decision and its actions in one transaction; returns the ids of actions to run."""
        return self.save_decisions([(incident_id, decision)], now)[incident_id]

    def save_decisions(self, decided: list[tuple[int, Decision]], now: dt.datetime) -> dict[int, list[int]]:
        """A tick's decisions in one transaction: {incident id: ids of the actions to run}."""
        t = ts(now)
        with self._tx() as db:
            return {incident_id: self._save(db, incident_id, decision, t) for incident_id, decision in decided}

    def _save(self, db: sqlite3.Connection, incident_id: int, decision: Decision, t: str) -> list[int]:
        status, state = STATUS_OF[decision.outcome], ACTION_STATE_OF.get(decision.outcome)
        row = db.execute("SELECT alert_status, status, reason FROM incidents WHERE id=?", (incident_id,)).fetchone()
        if row is None or row["status"] not in DECIDABLE:
            return []  # resolved (cancelled) meanwhile, or already decided
        db.execute("UPDATE incidents SET status=?, reason=?, detail=?, rule=?, not_before=?, trace=?,"
                   " waiting_since=CASE WHEN ?='waiting' THEN COALESCE(waiting_since, ?) END, updated_at=? WHERE id=?",
                   (status, decision.reason, decision.detail, decision.rule,
                    ts(decision.not_before) if decision.not_before else None, json.dumps(list(decision.trace)),
                    status, t, t, incident_id))
        ids = []
        if state is not None:
            first = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM actions WHERE incident_id=?",
                               (incident_id,)).fetchone()[0]  # after a chain an earlier wait cancelled
            for seq, p in enumerate(decision.actions, start=first):
                cur = db.execute("INSERT INTO actions (incident_id, seq, rule, type, target, params, state,"
                                 " workload, amount, planned_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 (incident_id, seq, decision.rule, p.type, p.target,
                                  json.dumps(p.params, default=str), state, p.workload, p.amount, t))
                ids.append(cur.lastrowid)
        if not (decision.outcome == "wait" and row["status"] == "waiting" and row["reason"] == decision.reason):
            self._audit(db, f"decision:{decision.outcome}", {"rule": decision.rule, "reason": decision.reason,
                                                             "detail": decision.detail}, t, incident_id, None)
        return ids if decision.outcome == "act" else []

    def claim_action(self, action_id: int, now: dt.datetime) -> ActionRow | None:
        """planned (or running, after a crash) -> running; None if cancelled or already finished."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM actions WHERE id=?", (action_id,)).fetchone()
            if row is None or row["state"] not in ("planned", "running"):
                return None
            db.execute("UPDATE actions SET state='running', started_at=COALESCE(started_at, ?) WHERE id=?",
                       (ts(now), action_id))
        return ActionRow(row["id"], row["incident_id"], row["seq"], row["rule"], row["type"], row["target"],
                         json.loads(row["params"]), "running")

    def finish_action(self, action_id: int, state: str, result: dict, now: dt.datetime) -> None:
        t = ts(now)
        with self._tx() as db:
            row = db.execute("UPDATE actions SET state=?, result=?, finished_at=? WHERE id=? RETURNING incident_id",
                             (state, json.dumps(result, default=str), t, action_id)).fetchone()
            inc = row["incident_id"]
            if state != "succeeded":  # the rest of the chain does not run
                db.execute("UPDATE actions SET state='cancelled', finished_at=?, result=? WHERE incident_id=? AND"
                           " state='planned'", (t, json.dumps({"detail": f"an earlier action {state}"}), inc))
            left = db.execute("SELECT COUNT(*) FROM actions WHERE incident_id=? AND state IN ('planned','running')",
                              (inc,)).fetchone()[0]
            if not left:
                states = {r[0] for r in db.execute("SELECT state FROM actions WHERE incident_id=?", (inc,))}
                final = final_status(states)
                resolved = db.execute("SELECT alert_status FROM incidents WHERE id=?", (inc,)).fetchone()[0]
                if final == "succeeded" and "cancelled" in states and resolved == "resolved":  # resolved mid-chain
                    result = {"reason": "resolved_during_execution", "detail": "the alert resolved during execution;"
                              " what ran is kept (on_resolved follow-ups run), the rest was cancelled"}
                db.execute("UPDATE incidents SET status=?, reason=CASE WHEN ?='succeeded' THEN '' ELSE ? END,"
                           " detail=?, updated_at=? WHERE id=? AND status='acting'",
                           (final, "" if "cancelled" in states and final == "succeeded" else final,
                            result.get("reason", final), result.get("detail", ""), t, inc))

    def incomplete_actions(self) -> dict[int, list[int]]:
        with self._read() as db:
            rows = db.execute("SELECT id, incident_id FROM actions WHERE state IN ('planned','running')"
                              " ORDER BY incident_id, seq").fetchall()
        chains: dict[int, list[int]] = {}
        for r in rows:
            chains.setdefault(r["incident_id"], []).append(r["id"])
        return chains

    def history(self, since: dt.datetime) -> list[PastAction]:
        """Actions planned since `since`, plus, however old, those in flight and what a still-firing
        incident did or would have done (an uncordon must not undo a node another one still needs)."""
        with self._read() as db:
            rows = db.execute("SELECT a.*, i.alert_status, EXISTS (SELECT 1 FROM actions b WHERE b.incident_id ="
                              " a.incident_id AND b.started_at IS NOT NULL) AS admitted"
                              " FROM actions a JOIN incidents i ON i.id = a.incident_id"
                              " WHERE a.planned_at >= ? OR a.state IN ('planned','running')"
                              " OR (a.state IN ('dry_run','succeeded') AND i.alert_status='firing')",
                              (ts(since),)).fetchall()
        return [PastAction(r["incident_id"], r["rule"], r["type"], r["target"], from_ts(r["planned_at"]),
                           r["state"], r["alert_status"] == "firing", r["workload"], r["amount"], bool(r["admitted"]),
                           bookkeeping_time(r["finished_at"]))
                for r in rows]

    def repairs(self, since: dt.datetime) -> list[RepairRecord]:
        """Repair attempts since `since`, with the node they acted on and the GPU UUID of their
        incident: what the repeat-offender rule counts (a long window; history() is short)."""
        marks = ",".join("?" * len(REPAIR_ACTIONS))
        with self._read() as db:
            rows = db.execute(f"SELECT a.incident_id, a.type, a.params, a.state, COALESCE(a.started_at, a.planned_at)"
                              f" AS at, i.labels FROM actions a JOIN incidents i ON i.id = a.incident_id"
                              f" WHERE a.type IN ({marks}) AND a.planned_at >= ?", (*REPAIR_ACTIONS, ts(since))
                              ).fetchall()
        out = []
        for r in rows:
            params, labels = json.loads(r["params"]), json.loads(r["labels"])
            out.append(RepairRecord(r["incident_id"], r["type"], str(params.get("node", "")),
                                    str(params.get("uuid") or labels.get("uuid", "")), from_ts(r["at"]), r["state"]))
        return out

    # ---- verification, escalation, after the alert resolves --------------------------------

    def append_action(self, incident_id: int, rule: str, type_: str, target: str, params: dict,
                      now: dt.datetime) -> int:
        """An escalation step: one more planned action on the incident, which is acting again."""
        t = ts(now)
        with self._tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM actions WHERE incident_id=?",
                             (incident_id,)).fetchone()[0]
            cur = db.execute("INSERT INTO actions (incident_id, seq, rule, type, target, params, state, planned_at)"
                             " VALUES (?,?,?,?,?,?,'planned',?)",
                             (incident_id, seq, rule, type_, target, json.dumps(params, default=str), t))
            db.execute("UPDATE incidents SET status='acting', updated_at=? WHERE id=?", (t, incident_id))
            self._audit(db, "escalate", {"type": type_, "target": target}, t, incident_id, cur.lastrowid)
        return cur.lastrowid

    def set_verification(self, incident_id: int, result: str, detail: str, now: dt.datetime) -> None:
        t = ts(now)
        with self._tx() as db:
            db.execute("UPDATE incidents SET verification=?, updated_at=? WHERE id=?", (result, t, incident_id))
            self._audit(db, f"verify:{result}", {"detail": detail}, t, incident_id, None)

    def resolved_followups(self) -> list[dict]:
        """Incidents acted on whose alert has resolved and whose follow-up (restore, uncordon) is due."""
        with self._read() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM incidents WHERE alert_status='resolved' AND"
                                            " after_resolve='' AND status IN ('succeeded','failed','blocked')"
                                            " AND rule IS NOT NULL")]
        return [self.get_incident(i) for i in ids]

    def mark_after_resolve(self, incident_id: int, outcome: str, now: dt.datetime) -> None:
        t = ts(now)
        with self._tx() as db:
            db.execute("UPDATE incidents SET after_resolve=?, updated_at=? WHERE id=?", (outcome, t, incident_id))
            self._audit(db, "after_resolve", {"outcome": outcome}, t, incident_id, None)

    # ---- state, audit, queries ---------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def set_state(self, key: str, value: str | None) -> None:
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM state WHERE key=?", (key,))
            else:
                db.execute("INSERT INTO state (key, value) VALUES (?,?) ON CONFLICT (key) DO UPDATE SET"
                           " value=excluded.value", (key, value))

    @staticmethod
    def _audit(db: sqlite3.Connection, event: str, detail: dict, t: str, incident_id: int | None,
               action_id: int | None) -> None:
        db.execute("INSERT INTO audit (at, incident_id, action_id, event, detail) VALUES (?,?,?,?,?)",
                   (t, incident_id, action_id, event, json.dumps(detail, default=str, sort_keys=True)))

    def audit(self, event: str, detail: dict, now: dt.datetime, *, incident_id: int | None = None,
              action_id: int | None = None) -> None:
        with self._tx() as db:
            self._audit(db, event, detail, ts(now), incident_id, action_id)

    def ping(self) -> None:
        """Readiness: the ledger can be read, and written (the rate-limited write probe: a full disk
        must take intake out of the webhook Service)."""
        with self._tx() as db:
            db.execute("SELECT 1").fetchone()
        self._write_probe.check()

    def _probe_write(self) -> None:
        """One durable write on a connection of its own (FULL, as intake), bounded by a 2 s lock wait."""
        db = sqlite3.connect(self.path, isolation_level=None, timeout=2.0)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('readyz_write_probe', ?)",
                       (ts(dt.datetime.now(dt.UTC)),))
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Inconclusive(str(exc)) from exc
            raise
        finally:
            db.close()


class _Tx:
    """One serialised transaction on the shared connection; commits on success."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, begin: str) -> None:
        self.db, self.lock, self.begin = db, lock, begin

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute(self.begin)
        except BaseException as exc:
            self.lock.release()
            _raise_unavailable(exc)
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            try:
                self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            except sqlite3.OperationalError as err:
                if exc_type is None:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                    _raise_unavailable(err)
                raise
        finally:
            self.lock.release()
        if exc is not None:
            _raise_unavailable(exc)


_UNAVAILABLE = ("disk is full", "disk i/o error", "database is locked", "readonly", "unable to open")


def _raise_unavailable(exc: BaseException) -> None:
    """A full disk, an I/O error or a lock held too long is the ledger being unavailable (temporary,
    not the incident's fault: LedgerUnavailable), not a bug in the incident; anything else is left as is."""
    if isinstance(exc, sqlite3.OperationalError) and any(m in str(exc).lower() for m in _UNAVAILABLE):
        raise LedgerUnavailable(f"the ledger could not be written: {exc}") from exc
