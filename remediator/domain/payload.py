"""Alertmanager webhook payload, version 4: parsed and validated into typed alerts.

Identity comes from each alert's fingerprint and startsAt, never from the group's commonLabels,
which change as alerts join and leave the group. Unknown fields are tolerated (0.32+ adds
`notification_reason`).

Two paths, one meaning. `parse` first tries msgspec's typed decoder (a 10,000-alert storm decodes
and type-checks in C, and parses in about half the time of orjson plus per-alert Python checks); it
only accepts.
Anything it does not accept goes to the strict path (`parse_strict`: orjson, then field by field),
which decides and explains every rejection, so each error message is written once. One difference
remains, in what neither path stores: unknown fields are skipped by the fast path after a syntax
and UTF-8 check, so a number like 1e400 there passes it, where orjson refuses it."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import orjson


class PayloadError(ValueError):
    """The body is not a v4 webhook payload; `detail` says which field and why."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error, self.detail = error, detail


ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # Go's zero time: the endsAt of a firing alert
MIN_YEAR, MAX_YEAR = 1970, 9999  # what the ledger stores; anything else is a sender's bug
_HEX = re.compile(r"[0-9a-fA-F]{1,64}").fullmatch
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z")
_MAX_TIME_CHARS = 40  # longer is never RFC 3339; also keeps huge strings out of the cache


def _to_utc(t: dt.datetime) -> dt.datetime | str:
    try:
        utc = t.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0
        return "is out of range (its offset moves it outside years 1-9999)"
    if t != ZERO_TIME and not MIN_YEAR <= utc.year <= MAX_YEAR:
        return f"is out of range: year {utc.year} in UTC (accepted: {MIN_YEAR}-{MAX_YEAR})"
    return utc


@functools.lru_cache(maxsize=4096)
def _parse_rfc3339(value: str) -> dt.datetime | str:
    """Cached: the alerts of one rule evaluation, and every firing endsAt, share their timestamps.
    Returns the time in UTC within years 1970-9999 (or Go's zero time), else why not."""
    m = _RFC3339.match(value)
    if not m:
        return f"is not RFC 3339: {value[:64]!r}"
    frac = (m.group(2) or "")[:7]  # Go writes nanoseconds; Python keeps microseconds
    tz = "+00:00" if m.group(3) in ("Z", "z") else m.group(3)
    try:
        t = dt.datetime.fromisoformat(m.group(1).replace("t", "T").replace(" ", "T") + frac + tz)
    except ValueError as exc:
        return str(exc)
    return _to_utc(t)


def parse_time(value: Any, where: str, *, zero_ok: bool = False) -> dt.datetime:
    if not isinstance(value, str):
        raise PayloadError("invalid_payload", f"{where} must be an RFC 3339 string")
    if len(value) > _MAX_TIME_CHARS:
        raise PayloadError("invalid_payload", f"{where} is not RFC 3339: {value[:64]!r}")
    parsed = _parse_rfc3339(value)
    if isinstance(parsed, str):
        raise PayloadError("invalid_payload", f"{where} {parsed}")
    if parsed == ZERO_TIME and not zero_ok:
        raise PayloadError("invalid_payload", f"{where} is the zero time; accepted: years {MIN_YEAR}-{MAX_YEAR}")
    return parsed


def format_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: dt.datetime
    ends_at: dt.datetime
    fingerprint: str
    generator_url: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """The incident key: the same alert episode, however often and by whom it is sent."""
        return self.fingerprint, format_time(self.starts_at)


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    group_key: str
    truncated_alerts: int
    alerts: list[Alert] = field(default_factory=list)
    external_url: str = ""


def _str_map(value: Any, i: int, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict or not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise PayloadError("invalid_payload", f"alerts[{i}].{name} must be an object of strings")
    return value


def _time(value: Any, i: int, name: str, *, zero_ok: bool = False) -> dt.datetime:
    """parse_time with the hot path first: a cached, valid timestamp (a storm shares a few)."""
    if type(value) is str and len(value) <= _MAX_TIME_CHARS:
        parsed = _parse_rfc3339(value)
        if type(parsed) is dt.datetime and (zero_ok or parsed != ZERO_TIME):
            return parsed
    return parse_time(value, f"alerts[{i}].{name}", zero_ok=zero_ok)


def _alert(raw: Any, i: int) -> Alert:
    """One alert; the error messages (built only on error) name the field."""
    if type(raw) is not dict:
        raise PayloadError("invalid_payload", f"alerts[{i}] must be an object")
    get = raw.get
    status = get("status")
    if status != "firing" and status != "resolved":
        raise PayloadError("invalid_payload", f"alerts[{i}].status must be 'firing' or 'resolved'")
    labels = _str_map(get("labels"), i, "labels")
    if not labels:
        raise PayloadError("invalid_payload", f"alerts[{i}].labels must not be empty")
    fingerprint = get("fingerprint")
    if type(fingerprint) is not str or not _HEX(fingerprint):
        raise PayloadError("invalid_payload", f"alerts[{i}].fingerprint must be a hex string")
    ends_raw = get("endsAt")
    gen = get("generatorURL", "")
    return Alert(status, labels, _str_map(get("annotations"), i, "annotations"), _time(get("startsAt"), i, "startsAt"),
                 ZERO_TIME if ends_raw is None or ends_raw == "" else _time(ends_raw, i, "endsAt", zero_ok=True),
                 fingerprint.lower(), gen if type(gen) is str else "")


def parse_alert(raw: Any, i: int = 0) -> Alert:
    """One alert object as a webhook body holds it (Alertmanager's API gives the same shape)."""
    return _alert(raw, i)


def _brief(value: Any) -> str:
    """A sender's value in an error message: a short repr of a scalar, else its JSON type (the repr
    of a list nested 1,000 deep raises RecursionError; a megabyte string would be echoed whole)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:64]) + ("..." if len(value) > 64 else "")
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"


def parse_strict(body: bytes) -> Notification:
    """The reference path. orjson rejects what must never reach the ledger: invalid UTF-8, lone
    surrogates (escaped or not, in keys and values), NaN/Infinity, integers over 64 bits and nesting
    deeper than 1024."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("invalid_json", str(exc)) from exc
    if not isinstance(data, dict):
        raise PayloadError("invalid_payload", "the body must be a JSON object")
    if data.get("version") != "4":
        raise PayloadError("invalid_payload", f"version must be \"4\", got {_brief(data.get('version'))}")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("invalid_payload", "alerts must be an array")
    truncated = data.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("invalid_payload", "truncatedAlerts must be a non-negative integer")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError("invalid_payload", "status must be 'firing' or 'resolved'")
    for name in ("receiver", "groupKey", "externalURL"):
        if not isinstance(data.get(name, ""), str):
            raise PayloadError("invalid_payload", f"{name} must be a string")
    return Notification(receiver=data.get("receiver", ""), status=status, group_key=data.get("groupKey", ""),
                        truncated_alerts=truncated, alerts=[_alert(a, i) for i, a in enumerate(alerts)],
                        external_url=data.get("externalURL", ""))


# ---- the fast path: typed decoding in C, then the checks types cannot say (hex, non-empty, times) ----

_I64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_StrMap = dict[str, str] | None


class _RawAlert(msgspec.Struct, gc=False):  # names as the payload spells them; no cycles: untracked
    status: Literal["firing", "resolved"]
    labels: _StrMap = None
    annotations: _StrMap = None
    fingerprint: str = ""
    startsAt: str = ""
    endsAt: str | None = None
    generatorURL: Any = ""  # not a string: tolerated, as ""


class _RawNotification(msgspec.Struct, gc=False):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[_RawAlert]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: _I64 = 0
    externalURL: str = ""


_DECODER = msgspec.json.Decoder(_RawNotification)


class _NotFast(Exception):
    """The fast path does not accept this body; the strict path decides (and says why)."""


def _fast_time(value: str | None, *, zero_ok: bool) -> dt.datetime:
    if value is None or value == "":
        if zero_ok:
            return ZERO_TIME
        raise _NotFast
    parsed = _parse_rfc3339(value) if len(value) <= _MAX_TIME_CHARS else None
    if type(parsed) is not dt.datetime or (parsed == ZERO_TIME and not zero_ok):
        raise _NotFast
    return parsed


def _fast_alerts(raw: list[_RawAlert]) -> list[Alert]:
    """One loop for a storm's alerts; the times they share are checked once (memo per body)."""
    starts: dict[str, dt.datetime] = {}
    ends: dict[str | None, dt.datetime] = {}
    out = []
    for a in raw:
        if not a.labels or not _HEX(a.fingerprint):
            raise _NotFast
        s = starts.get(a.startsAt)
        if s is None:
            s = starts[a.startsAt] = _fast_time(a.startsAt, zero_ok=False)
        e = ends.get(a.endsAt)
        if e is None:
            e = ends[a.endsAt] = _fast_time(a.endsAt, zero_ok=True)
        gen = a.generatorURL
        out.append(Alert(a.status, a.labels, a.annotations or {}, s, e, a.fingerprint.lower(),
                         gen if type(gen) is str else ""))
    return out


def _parse_fast(body: bytes) -> Notification:
    try:
        body.decode()  # strict UTF-8 everywhere, unknown fields too (raw surrogates are not UTF-8)
        raw = _DECODER.decode(body)
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError) as exc:
        raise _NotFast from exc
    return Notification(receiver=raw.receiver, status=raw.status, group_key=raw.groupKey,
                        truncated_alerts=raw.truncatedAlerts, alerts=_fast_alerts(raw.alerts),
                        external_url=raw.externalURL)


def parse(body: bytes) -> Notification:
    """The notification in `body`, or PayloadError saying which field is wrong and why."""
    try:
        return _parse_fast(body)
    except _NotFast:
        return parse_strict(body)
