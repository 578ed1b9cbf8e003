"""Prometheus-style durations ("90s", "5m", "1h30m") for the config."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds; accepts a number of seconds or a duration string. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s or 5m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a duration like 30s or 5m, got {value!r}")
    pos, total = 0, 0.0
    for m in _PART.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"expected a duration like 30s or 5m, got {value!r}")
    return total
