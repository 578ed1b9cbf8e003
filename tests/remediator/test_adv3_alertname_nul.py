"""Adversarial: the fast path's json_each INSERT (batches of at most FEW_ROWS rows) and the row by
row INSERT (more rows) must store the same columns. SQLite's `->>` cuts a JSON string at an
escaped NUL, so an alertname with "\\u0000" (valid JSON, accepted by parse and parse_strict) is
stored truncated by a small batch and whole by a big one: the same alert gets a different
`alertname` column (API filter, listings) depending on how many alerts shared its commit."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

from remediator.domain.payload import parse, parse_strict
from remediator.store.intake import FEW_ROWS
from remediator.store.ledger import SQLiteLedger

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
NAME = "Disk\u0000Full"


def _body(n: int) -> bytes:
    alerts = [{"status": "firing", "labels": {"alertname": NAME, "i": str(i)}, "fingerprint": f"{i + 1:x}",
               "startsAt": "2026-11-22T12:00:00Z"} for i in range(n)]
    return json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()


def _alertnames(path: str) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT alertname FROM incidents")}
    finally:
        db.close()


def test_alertname_with_nul_is_stored_whole_by_both_insert_paths(tmp_path):
    for n in (1, FEW_ROWS + 1):
        body = _body(n)
        assert parse(body) == parse_strict(body)  # accepted by both parsers
        path = str(tmp_path / f"l{n}.db")
        lg = SQLiteLedger(path)
        try:
            assert lg.record(parse(body).alerts, T0).new == n
        finally:
            lg.close()
        assert _alertnames(path) == {NAME}, f"{n} alerts in one commit"
