"""Durations exactly as Prometheus parses them (prometheus/common model.ParseDuration): integer
amounts of y, w, d, h, m, s, ms, each unit at most once and in that order ("1h30m", not "30m1h"),
no fractions ("1.5h" is an error), "0" without a unit. A YAML number is taken as seconds."""

from __future__ import annotations

import math
import re

_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000,
       "ms": 1}
# The same expression as Prometheus'; \Z because Python's $ also matches before a final newline.
_DURATION = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?"
                       r"(?:([0-9]+)ms)?\Z", re.ASCII)
_MAX_NS = 2**63 - 1  # Go's time.Duration


def parse_duration(value: object) -> float:
    """Seconds; accepts a number of seconds or a Prometheus duration string. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s or 5m, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value > _MAX_NS / 1e9:  # .nan compares false with every limit
            raise ValueError(f"duration out of range: {value!r} (at most {_MAX_NS // 10**9} s, as Prometheus)")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s or 5m, got {value!r}")
    return _parse_string(value) / 1e9


def _parse_string(value: str) -> int:
    """Nanoseconds, as prometheus/common's model.ParseDuration computes them."""
    if value == "0":
        return 0
    if value == "":
        raise ValueError("empty duration string")
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"not a valid duration string: {value!r} (Prometheus durations: integers with units "
                         "y w d h m s ms, largest first, e.g. 1h30m)")
    total_ns = 0
    for amount, unit in zip(m.groups(), _MS, strict=True):
        if amount is None:
            continue
        n = int(amount)
        if n > _MAX_NS // _MS[unit] // 1_000_000:
            raise ValueError(f"duration out of range: {value!r}")
        total_ns += n * _MS[unit] * 1_000_000
        if total_ns > _MAX_NS:
            raise ValueError(f"duration out of range: {value!r}")
    return total_ns
