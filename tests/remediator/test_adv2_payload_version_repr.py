"""Adversarial: the strict path's error message for a wrong `version` used repr() of whatever the
sender put there. A list nested 1,000 deep (orjson accepts up to 1,024) made repr raise
RecursionError, so the webhook answered 500 instead of 400; a huge string was echoed whole."""

from __future__ import annotations

import pytest

from remediator.config import parse_config
from remediator.domain.payload import PayloadError, parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app

NESTED = b'{"version":' + b"[" * 1000 + b"]" * 1000 + b"}"


def test_a_deeply_nested_version_is_a_payload_error():
    with pytest.raises(PayloadError) as err:
        parse(NESTED)
    assert err.value.error == "invalid_payload" and "array" in err.value.detail


def test_a_huge_version_string_is_not_echoed_whole():
    with pytest.raises(PayloadError) as err:
        parse(b'{"version":"' + b"x" * 100_000 + b'"}')
    assert len(err.value.detail) < 200


@pytest.mark.parametrize("version,shown", [(3, "3"), ("3", "'3'"), (None, "None"), ({"a": 1}, "object")])
def test_the_message_still_names_what_was_sent(version, shown):
    import orjson

    with pytest.raises(PayloadError) as err:
        parse(orjson.dumps({"version": version, "status": "firing", "alerts": []}))
    assert shown in err.value.detail


def test_the_webhook_answers_400_not_500(tmp_path):
    config = parse_config({"ledger": {"path": str(tmp_path / "l.db")}, "safety": {"dry_run": True}}, "adv2.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, None, metrics)
    http = create_app(config, ledger, engine, metrics, insecure_no_auth=True).test_client()
    try:
        r = http.post("/webhook/alertmanager", data=NESTED, content_type="application/json")
        assert r.status_code == 400, r.get_data(as_text=True)
        assert r.get_json()["error"] == "invalid_payload"
    finally:
        ledger.close()
