"""Hostile input never stalls the remediator: rejected at the door (400, nothing recorded), and
what slips through fails alone (one request in a group commit, one incident in a tick)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.config import parse_config
from remediator.domain.payload import Alert, PayloadError, parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.store.views import from_ts, ts
from remediator.web.app import create_app
from tests.k8s.controlplane import wait_until

from .payloads import alert, body, xid_labels

NOW = dt.datetime.now(dt.UTC)


def enc(b: dict) -> bytes:
    return json.dumps(b).encode()


def with_alert(**fields) -> bytes:
    b = body(alert(xid_labels("n1")))
    b["alerts"][0].update(fields)
    return enc(b)


@pytest.mark.parametrize(("raw", "error"), [
    (with_alert(startsAt="0999-12-31T23:59:59Z"), "year 999"),
    (with_alert(startsAt="0001-01-01T00:00:00Z"), "zero time"),
    (with_alert(startsAt="1969-12-31T23:59:59Z"), "year 1969"),
    (with_alert(startsAt="0001-01-01T00:00:00+01:00"), "out of range"),
    (with_alert(startsAt="9999-12-31T23:59:59-01:00"), "out of range"),
    (with_alert(startsAt="2026-11-20T14:03:15" + "1" * 5000 + "Z"), "not RFC 3339"),
    (with_alert(endsAt="0999-01-01T00:00:00Z"), "endsAt is out of range"),
    (with_alert(startsAt=12), "RFC 3339 string"),
    (with_alert(labels={"alertname": "X", "node": "n\ud800"}), "surrogate"),
    (with_alert(labels={"alertname": "X", "n\udc00": "v"}), "surrogate"),
    (with_alert(annotations={"summary": "\udfff"}), "surrogate"),
    (with_alert(extra="DEEP").replace(b'"DEEP"', b"[" * 5000 + b"]" * 5000), "depth"),
    (b'{"version": "4", "x": NaN}', "unexpected character"),
    (b'{"version": "4", "alerts": [], "status": "firing", "receiver": "\xed\xa0\x80"}', "surrogates"),
    (with_alert(labels=["alertname", "X"]), "object of strings"),
    (with_alert(status=None), "status"),
])
def test_hostile_bodies_are_rejected_with_the_reason(raw, error):
    with pytest.raises(PayloadError) as err:
        parse(raw)
    assert error in err.value.detail


def test_firing_alerts_keep_gos_zero_end_time():
    note = parse(with_alert(endsAt="0001-01-01T00:00:00Z", startsAt="1970-01-01T00:00:00+00:00"))
    assert note.alerts[0].ends_at.year == 1 and note.alerts[0].starts_at.year == 1970


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=14)),
                                               dt.timezone(-dt.timedelta(hours=12, minutes=30))])))
def test_every_time_round_trips_through_the_ledger_text_in_order(t):
    text = ts(t)
    assert len(text) == len("2026-01-01T00:00:00.000000Z")
    back = from_ts(text)
    try:
        expected = t.astimezone(dt.UTC)
    except OverflowError:  # clamped to the representable range
        assert back.year in (1, 9999)
        return
    assert back == expected
    assert (text < ts(dt.datetime(5000, 1, 1, tzinfo=dt.UTC))) == (expected.year < 5000)


@pytest.fixture
def ledger(tmp_path):
    lg = SQLiteLedger(str(tmp_path / "ledger.db"))
    yield lg
    lg.close()


def _alert(i: int, node: str = "n") -> Alert:
    return Alert("firing", {"alertname": "GpuXidCritical", "node": f"{node}{i}"}, {}, NOW, NOW, f"{i:x}")


def test_a_poisoned_request_fails_alone_in_the_group_commit(ledger):
    """600 valid requests and 3 unwritable ones queued into the same commit: the 600 are recorded."""
    poison = Alert("firing", {"alertname": "X", "node": "bad\ud800"}, {}, NOW, NOW, "dead")
    jobs = [[_alert(i)] for i in range(600)]
    for k in (0, 300, 599):
        jobs.insert(k, [_alert(10_000 + k), poison])
    results: dict[int, object] = {}

    def send(k: int, alerts: list[Alert]) -> None:
        try:
            results[k] = ledger.record(alerts, NOW)
        except Exception as exc:
            results[k] = exc

    gc = ledger._intake
    with gc._mutex:
        gc._leading = True  # a commit in progress: everything below queues up behind it, for the next one
    threads = [threading.Thread(target=send, args=(k, a)) for k, a in enumerate(jobs)]
    for t in threads:
        t.start()
    wait_until(lambda: len(gc._queue) == len(jobs), 30, what="all requests queued")
    gc._queue[0].wake.release()  # that commit ends: it hands the lead to the oldest request waiting
    for t in threads:
        t.join(30)
    failed = [k for k, r in results.items() if isinstance(r, Exception)]
    assert sorted(failed) == [0, 300, 599] and all("surrogate" in str(results[k]) for k in failed)
    assert ledger.list_incidents(status=None, alertname=None, limit=1, offset=0)[1] == 600
    assert all(10_000 + k not in (int(i["fingerprint"], 16) for i in ledger.list_incidents(
        status=None, alertname=None, limit=500, offset=0)[0]) for k in (0, 300, 599))


POLICY = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}


def _engine(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "t")
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
                           "ledger": {"path": str(tmp_path / "ledger.db")},
                           "safety": {"dry_run": True, "breaker": {"max_actions": 100_000},
                                      "budget": {"max_nodes": 100_000}},
                           "policy": POLICY}, "test.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    return config, ledger, metrics, Engine(config, ledger, None, metrics)


def test_one_poisoned_incident_among_500_good_ones(tmp_path, monkeypatch):
    """Rows the engine cannot read or decide are failed with the exception; the 500 others are decided."""
    config, ledger, metrics, engine = _engine(tmp_path, monkeypatch)
    ledger.record([_alert(i) for i in range(250)], NOW)
    db = sqlite3.connect(config.ledger_path)
    with db:  # as an older version or another writer might have left them
        db.execute("INSERT INTO incidents (fingerprint, starts_at, alertname, labels, annotations, alert_status,"
                   " status, received_at, updated_at) VALUES ('bad1', '999-12-31T23:59:59.000000Z', 'X', '{}', '{}',"
                   " 'firing', 'pending', 'x', 'x')")
        db.execute("INSERT INTO incidents (fingerprint, starts_at, alertname, labels, annotations, alert_status,"
                   " status, received_at, updated_at) VALUES ('bad2', '2026-01-01T00:00:00.000000Z', 'X', '[1]',"
                   " '{}', 'firing', 'pending', 'x', 'x')")
    db.close()
    ledger.record([_alert(i) for i in range(250, 500)], NOW)
    engine.start()
    try:
        def settled():
            counts = ledger.counts_by_status()
            return counts if counts.get("dry_run", 0) == 500 and counts.get("failed", 0) == 2 else None
        counts = wait_until(settled, 120, what="500 dry-run decisions and 2 failed incidents")
    finally:
        engine.stop()
    assert counts.get("pending", 0) == 0
    failed, _ = ledger.list_incidents(status="failed", alertname=None, limit=10, offset=0)
    assert {f["reason"] for f in failed} == {"internal_error"}
    assert any(f["detail"].startswith("ValueError") for f in failed)  # the unreadable time
    assert any(f["detail"].startswith("AttributeError") for f in failed)  # labels that are not a mapping
    for f in failed:
        audit = ledger.get_incident(f["id"])["audit"]
        assert audit[-1]["event"] == "internal_error" and audit[-1]["detail"]["exception"]
    assert metrics.incident_errors.labels("read")._value.get() + \
        metrics.incident_errors.labels("decide")._value.get() == 2
    ledger.close()


def test_rejected_bodies_record_nothing(tmp_path, monkeypatch):
    config, ledger, metrics, engine = _engine(tmp_path, monkeypatch)
    app = create_app(config, ledger, engine, metrics).test_client()
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    for raw in (with_alert(startsAt="0999-12-31T23:59:59Z"), with_alert(labels={"alertname": "\ud800"}),
                b"[" * 100_000, b"{" * 3):
        resp = app.post("/webhook/alertmanager", data=raw, headers=headers)
        assert resp.status_code == 400 and resp.is_json and resp.get_json()["error"], resp.data[:200]
    resp = app.post("/webhook/alertmanager", data=b" " * (config.max_body_bytes + 1), headers=headers)
    assert resp.status_code == 413 and resp.is_json
    assert ledger.counts_by_status() == {}
    ledger.close()
