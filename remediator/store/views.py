"""The ledger's read side: incident lists, one incident's trace, counts by status. Shared by the
SQLite ledger and the API; kept apart so the write path (intake, decisions) stays small."""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3

_MIN = dt.datetime.min.replace(tzinfo=dt.UTC)
_MAX = dt.datetime.max.replace(tzinfo=dt.UTC)
MAX_ROWID = 2**63 - 1  # SQLite integers are 64-bit: a larger id names no row, a larger offset no page


@functools.lru_cache(maxsize=4096)
def ts(t: dt.datetime) -> str:
    """Fixed-width UTC text (years zero-padded to 4 digits), so string order is time order in SQL and
    `from_ts` reads back every datetime (cached: storms share startsAt). The payload parser admits only
    years 1970-9999; an offset that would leave years 1-9999 is clamped here rather than raised."""
    try:
        u = t.astimezone(dt.UTC)
    except OverflowError:
        u = _MIN if t.year == 1 else _MAX
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
            f".{u.microsecond:06d}Z")


def from_ts(s: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def bookkeeping_time(value: object) -> dt.datetime | None:
    """Vigil's own bookkeeping times (received, waiting since, finished): one that does not read back
    is unknown, not the incident's failure."""
    try:
        return from_ts(value) if isinstance(value, str) else None
    except ValueError:
        return None


class LedgerViews:
    """Mixed into SQLiteLedger; uses its `_read()`."""

    def list_incidents(self, *, status: str | None, alertname: str | None, limit: int,
                       offset: int) -> tuple[list[dict], int]:
        where, args = [], []
        if status:
            where.append("status=?")
            args.append(status)
        if alertname:
            where.append("alertname=?")
            args.append(alertname)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._read() as db:
            total = db.execute(f"SELECT COUNT(*) FROM incidents {clause}", args).fetchone()[0]
            rows = db.execute(f"SELECT * FROM incidents {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                              [*args, min(limit, MAX_ROWID), min(offset, MAX_ROWID)]).fetchall()
        return [self._summary(r) for r in rows], total

    @staticmethod
    def _summary(r: sqlite3.Row) -> dict:
        return {"id": r["id"], "fingerprint": r["fingerprint"], "startsAt": r["starts_at"],
                "alertname": r["alertname"], "labels": json.loads(r["labels"]), "alert_status": r["alert_status"],
                "status": r["status"], "reason": r["reason"], "detail": r["detail"], "rule": r["rule"],
                "notifications": r["notifications"], "received_at": r["received_at"], "updated_at": r["updated_at"],
                "resolved_at": r["resolved_at"], "verification": r["verification"],
                "after_resolve": r["after_resolve"]}

    def get_incident(self, incident_id: int) -> dict | None:
        if not -MAX_ROWID - 1 <= incident_id <= MAX_ROWID:
            return None
        with self._read() as db:
            row = db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
            if row is None:
                return None
            actions = db.execute("SELECT * FROM actions WHERE incident_id=? ORDER BY seq", (incident_id,)).fetchall()
            audit = db.execute("SELECT * FROM audit WHERE incident_id=? ORDER BY id", (incident_id,)).fetchall()
        out = self._summary(row)
        out["annotations"] = json.loads(row["annotations"])
        out["not_before"] = row["not_before"]
        out["trace"] = json.loads(row["trace"])
        out["actions"] = [{"id": a["id"], "seq": a["seq"], "rule": a["rule"], "type": a["type"], "target": a["target"],
                           "params": json.loads(a["params"]), "state": a["state"], "result": json.loads(a["result"]),
                           "planned_at": a["planned_at"], "started_at": a["started_at"],
                           "finished_at": a["finished_at"]} for a in actions]
        out["audit"] = [{"at": a["at"], "event": a["event"], "action_id": a["action_id"],
                         "detail": json.loads(a["detail"])} for a in audit]
        return out

    def recent_audit(self, limit: int) -> list[dict]:
        """The newest audit records, global ones (pause, breaker) and incidents' alike."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"at": a["at"], "event": a["event"], "incident_id": a["incident_id"], "action_id": a["action_id"],
                 "detail": json.loads(a["detail"])} for a in rows]

    def counts_by_status(self) -> dict[str, int]:
        with self._read() as db:
            return {r[0]: r[1] for r in db.execute("SELECT status, COUNT(*) FROM incidents GROUP BY status")}
