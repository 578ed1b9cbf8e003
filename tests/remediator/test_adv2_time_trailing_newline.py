"""Adversarial: the RFC 3339 pattern ended in `$`, which also matches before a final newline, so
both payload paths accepted "2024-01-01T00:00:00Z\\n" (and the same in endsAt) as a valid time."""

from __future__ import annotations

import orjson
import pytest

from remediator.domain.payload import PayloadError, parse, parse_strict

from .payloads import alert, body, xid_labels


@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n"])
def test_a_time_with_a_trailing_newline_is_refused_by_both_paths(field, suffix):
    a = alert(xid_labels("n1"), status="resolved")
    a[field] = "2024-01-01T00:00:00Z" + suffix
    raw = orjson.dumps(body(a))
    for path in (parse, parse_strict):
        with pytest.raises(PayloadError) as err:
            path(raw)
        assert field in err.value.detail and "RFC 3339" in err.value.detail


def test_a_plain_time_still_passes():
    a = alert(xid_labels("n1"), status="resolved")
    a["endsAt"] = "2024-01-01T00:00:00Z"
    assert parse(orjson.dumps(body(a))).alerts[0].ends_at.year == 2024
