"""The payload's two paths mean the same: whatever the fast path (msgspec) accepts, the strict path
(orjson, field by field) accepts with the same result; whatever it does not, the strict path
decides. Checked on the hostile generator's bodies, valid ones and every mutation kind."""

from __future__ import annotations

from collections import Counter

import pytest

from remediator.domain import payload
from remediator.domain.payload import PayloadError, parse_strict

from .fuzz import Generator


def _strict(body: bytes):
    try:
        return parse_strict(body)
    except PayloadError as exc:
        return exc.error, exc.detail


def test_fast_and_strict_paths_agree_on_20000_generated_bodies():
    gen = Generator(seed=20261130, token="t", max_body=64 * 1024, waitress_limit=1 << 20)
    outcomes: Counter[str] = Counter()
    for req, _ in zip(gen, range(20_000), strict=False):
        if req.method != "POST" or not req.body:
            continue
        try:
            fast = payload._parse_fast(req.body)
        except payload._NotFast:
            outcomes["strict decides"] += 1
            continue
        outcomes["fast accepts"] += 1
        assert _strict(req.body) == fast, req.body[:300]
    # both paths were exercised, many times each
    assert outcomes["fast accepts"] > 2_000 and outcomes["strict decides"] > 2_000, outcomes


@pytest.mark.parametrize("body", [
    b'{"version":"4","status":"firing","alerts":[],"truncatedAlerts":18446744073709551615}',  # 2**64 - 1
    b'{"version":"4","status":"firing","alerts":[],"x":' + b"[" * 1010 + b"]" * 1010 + b"}",  # 1000 < depth <= 1024
    b'{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"a":"b"},"fingerprint":"AB",'
    b'"startsAt":"2026-11-20T14:03:15.482123456+02:00","endsAt":"","generatorURL":7}]}',
])
def test_what_only_the_strict_path_accepts_is_still_accepted(body):
    assert payload.parse(body) == parse_strict(body)


def test_the_fast_path_takes_a_storm_and_agrees():
    alerts = ",".join(
        f'{{"status":"firing","labels":{{"alertname":"S","i":"{i}"}},"annotations":{{"d":"x"}},'
        f'"startsAt":"2026-11-22T12:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"{i:x}"}}'
        for i in range(2_000))
    body = f'{{"version":"4","status":"firing","alerts":[{alerts}]}}'.encode()
    assert payload._parse_fast(body) == parse_strict(body)
