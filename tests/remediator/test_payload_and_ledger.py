"""Payload parsing and the ledger's idempotency, on a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import PayloadError, parse
from remediator.store.ledger import SQLiteLedger

from .payloads import alert, body, xid_labels

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def enc(b: dict) -> bytes:
    return json.dumps(b).encode()


def test_parses_a_v4_body_and_tolerates_unknown_fields():
    b = body(alert(xid_labels("n1")))
    b["notification_reason"] = "first notification"
    b["alerts"][0]["extra"] = {"anything": 1}
    b["alerts"][0]["startsAt"] = "2026-11-20T14:03:15.482123456Z"  # Go's nanoseconds
    note = parse(enc(b))
    assert note.alerts[0].labels["node"] == "n1"
    assert note.alerts[0].starts_at == dt.datetime(2026, 11, 20, 14, 3, 15, 482123, tzinfo=dt.UTC)
    assert note.alerts[0].ends_at.year == 1


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda b: b.update(version="3"), "version"),
        (lambda b: b.update(alerts={}), "alerts must be an array"),
        (lambda b: b["alerts"][0].update(status="burning"), "alerts[0].status"),
        (lambda b: b["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda b: b["alerts"][0].update(fingerprint="not-hex!"), "fingerprint"),
        (lambda b: b["alerts"][0].update(labels={"a": 1}), "labels"),
        (lambda b: b["alerts"][0].update(labels={}), "labels must not be empty"),
        (lambda b: b.update(truncatedAlerts=-1), "truncatedAlerts"),
    ],
)
def test_rejects_bad_payloads_with_the_field_named(mutate, error):
    b = body(alert(xid_labels("n1")))
    mutate(b)
    with pytest.raises(PayloadError) as err:
        parse(enc(b))
    assert error in err.value.detail


@pytest.fixture
def ledger(tmp_path):
    lg = SQLiteLedger(str(tmp_path / "ledger.db"))
    yield lg
    lg.close()


def test_same_incident_from_retries_and_ha_peers_is_one(ledger):
    a = parse(enc(body(alert(xid_labels("n1"))))).alerts
    first = ledger.record(a, NOW)
    assert first.new == 1
    for _ in range(5):
        assert ledger.record(a, NOW).duplicates == 1
    items, total = ledger.list_incidents(status=None, alertname=None, limit=10, offset=0)
    assert total == 1 and items[0]["notifications"] == 6


def test_a_new_starts_at_is_a_new_incident(ledger):
    labels = xid_labels("n1")
    ledger.record(parse(enc(body(alert(labels, starts_at=NOW)))).alerts, NOW)
    ledger.record(parse(enc(body(alert(labels, starts_at=NOW + dt.timedelta(hours=1))))).alerts, NOW)
    assert ledger.list_incidents(status=None, alertname=None, limit=10, offset=0)[1] == 2


def test_resolution_before_execution_cancels_the_planned_actions(ledger):
    labels = xid_labels("n1")
    ledger.record(parse(enc(body(alert(labels, starts_at=NOW)))).alerts, NOW)
    inc = ledger.due(NOW)[0]
    ids = ledger.save_decision(inc.id, Decision("act", "xid", (PlannedAction("cordon_node", "n1", {"node": "n1"}),)),
                               NOW)
    rec = ledger.record(parse(enc(body(alert(labels, starts_at=NOW, status="resolved")))).alerts, NOW)
    assert rec.resolved == 1 and rec.cancelled == 1
    assert ledger.claim_action(ids[0], NOW) is None  # never act on a resolved alert
    assert ledger.get_incident(inc.id)["status"] == "cancelled"
    # a late firing retry of the same episode does not re-open it
    ledger.record(parse(enc(body(alert(labels, starts_at=NOW)))).alerts, NOW)
    assert ledger.get_incident(inc.id)["alert_status"] == "resolved" and not ledger.due(NOW)


def test_state_survives_reopening_the_file(tmp_path):
    path = str(tmp_path / "l.db")
    lg = SQLiteLedger(path)
    lg.record(parse(enc(body(alert(xid_labels("n1"))))).alerts, NOW)
    inc = lg.due(NOW)[0]
    lg.save_decision(inc.id, Decision("act", "xid", (PlannedAction("cordon_node", "n1", {"node": "n1"}),)), NOW)
    lg.set_state("breaker_opened_at", "x")
    lg.close()
    again = SQLiteLedger(path)
    assert again.incomplete_actions() == {inc.id: [1]}
    assert again.get_state("breaker_opened_at") == "x"
    row = again.claim_action(1, NOW)
    assert row.type == "cordon_node" and row.params == {"node": "n1"}
    again.finish_action(1, "succeeded", {"detail": "cordoned"}, NOW)
    assert again.get_incident(inc.id)["status"] == "succeeded" and again.incomplete_actions() == {}


def test_concurrent_records_share_commits_and_lose_nothing(tmp_path):
    import threading

    lg = SQLiteLedger(str(tmp_path / "l.db"))
    results, errors = [], []
    bodies = [parse(enc(body(alert(xid_labels(f"n{i}"), starts_at=NOW)))).alerts for i in range(40)]

    def worker(k: int) -> None:
        try:
            for i in range(k, 40, 8):
                results.append(lg.record(bodies[i], NOW).new)
                results.append(lg.record(bodies[i], NOW).new)  # a resend: a duplicate, not new
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(results) == 40
    items, total = lg.list_incidents(status=None, alertname=None, limit=100, offset=0)
    assert total == 40 and {i["notifications"] for i in items} == {2}
    lg.close()
    again = SQLiteLedger(str(tmp_path / "l.db"))  # all of it is on disk
    assert again.list_incidents(status=None, alertname=None, limit=1, offset=0)[1] == 40
