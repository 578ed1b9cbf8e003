"""The global pause: who paused remediation, why, and until when. Kept in the ledger (it survives
restarts) as one JSON value; a pause with an expiry ends by itself, recorded in the audit trail."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from remediator.store.ledger import Ledger, from_ts, ts
from vigil_common.durations import parse_duration

PAUSE_KEY = "paused"


@dataclass(frozen=True)
class Pause:
    paused: bool = False
    reason: str = ""
    by: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # None: until someone resumes

    def expired(self, now: dt.datetime) -> bool:
        return self.paused and self.until is not None and now >= self.until

    def as_dict(self) -> dict:
        return {"paused": self.paused, "reason": self.reason, "by": self.by,
                "since": ts(self.since) if self.since else None, "until": ts(self.until) if self.until else None}

    def describe(self) -> str:
        if not self.paused:
            return "remediation is active (not paused)"
        until = f"until {ts(self.until)}" if self.until else "until someone resumes it"
        return f"remediation is PAUSED by {self.by or 'unknown'}: {self.reason or 'no reason given'} ({until})"


def read(ledger: Ledger) -> Pause:
    """The stored pause, expired or not (an older ledger's "true" is a pause without a reason)."""
    raw = ledger.get_state(PAUSE_KEY)
    if raw is None:
        return Pause()
    if raw == "true":
        return Pause(True, reason="no reason recorded")
    try:
        d = json.loads(raw)
    except ValueError:
        return Pause(True, reason="unreadable pause record")
    return Pause(True, reason=d.get("reason", ""), by=d.get("by", ""), since=from_ts(d.get("since")),
                 until=from_ts(d.get("until")))


def write(ledger: Ledger, pause: Pause) -> None:
    ledger.set_state(PAUSE_KEY, json.dumps(pause.as_dict()) if pause.paused else None)


def pause_request(body: object, now: dt.datetime) -> tuple[bool, str, dt.datetime | None]:
    """(paused, reason, until) from a POST /api/pause body; ValueError says what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("paused"), bool):
        raise ValueError('expected {"paused": true, "reason": "...", "for": "2h"} or {"paused": false}')
    reason, duration = body.get("reason", ""), body.get("for")
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValueError("reason: a string of at most 500 characters")
    try:
        reason.encode("utf-8")  # a lone surrogate ("\ud800") is not text: the status page could not show it
    except UnicodeEncodeError as exc:
        raise ValueError(f"reason: not valid Unicode text ({exc.reason} at position {exc.start})") from exc
    if duration is None:
        return body["paused"], reason.strip(), None
    try:
        seconds = parse_duration(duration) if isinstance(duration, str) else -1
    except ValueError as exc:
        raise ValueError(f"for: {exc}") from exc
    if seconds <= 0:
        raise ValueError('for: a positive duration string such as "2h" or "30m"')
    return body["paused"], reason.strip(), now + dt.timedelta(seconds=seconds)
