"""policy.maintenance_windows, policy.approval_ttl and the gates that use them (an action's
`approval` and `window`, a rule's `maintenance_window`): read and cross-checked once, every mistake
reported at its line (an unknown window, a schedule or time zone that does not parse)."""

from __future__ import annotations

from typing import Any

from remediator.domain.windows import Window, WindowError
from vigil_common.config import ConfigError, Section, report

GATE_KEYS = ("approval", "window")


def parse_windows(raw: Any, where: str) -> dict[str, Window]:
    """{name: {schedule: <cron>, duration: <duration>, time_zone: <IANA name>}}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report(ConfigError(f"{where}: a mapping of window name to {{schedule, duration, time_zone}}", at=(raw, None)))
        return {}
    windows = {}
    for name, spec in raw.items():
        sec = Section(spec, f"{where}: window {name!r}", ("schedule", "duration", "time_zone", "description"))
        schedule = sec.string("schedule", None, required=True)
        duration = sec.duration("duration", 0.0, positive=True)
        if not sec.get("duration"):
            sec.fail("duration", "required (how long the window stays open, e.g. 6h)")
        time_zone = sec.string("time_zone", "UTC") or "UTC"
        if schedule is None or not duration:
            continue
        try:
            windows[str(name)] = Window.parse(str(name), schedule, duration, time_zone)
        except WindowError as exc:
            sec.fail("time_zone" if "time zone" in str(exc) else "schedule", str(exc))
    return windows


def gate_of(a: dict, where: str) -> tuple[bool, str | None]:
    """An action's `approval: required|auto` and `window: <name>` (names are checked by check_gates)."""
    approval = a.get("approval", "auto")
    if approval not in ("required", "auto"):
        raise ConfigError(f"{where}: key 'approval': required or auto, got {approval!r}", at=(a, "approval"))
    window = a.get("window")
    if window is not None and (not isinstance(window, str) or not window):
        raise ConfigError(f"{where}: key 'window': the name of a maintenance window, got {window!r}", at=(a, "window"))
    return approval == "required", window


def _get(raw: dict, section: str, key: str) -> object:
    sec = raw.get(section)
    return sec.get(key) if isinstance(sec, dict) else None


def check_gates(raw_rules: list, windows: dict[str, Window], where: str) -> None:
    """Every window a rule or action names exists; a rule's `actions` and `escalate.steps` can be
    gated (an on_failure step cannot wait for a person or a window yet: it would stop the ladder)."""
    known = ", ".join(sorted(windows)) or "none defined"
    for raw in raw_rules:
        if not isinstance(raw, dict):
            continue
        rw = f"{where}: rule {raw.get('name')!r}"
        name = raw.get("maintenance_window")
        if name is not None and name not in windows:
            report(ConfigError(f"{rw}: key 'maintenance_window': no window {name!r} in policy.maintenance_windows "
                               f"(known: {known})", at=(raw, "maintenance_window")))
        for key, steps in (("actions", raw.get("actions")), ("escalate.steps", _get(raw, "escalate", "steps"))):
            for j, a in enumerate(steps if isinstance(steps, list) else []):
                if isinstance(a, dict) and isinstance(a.get("window"), str) and a["window"] not in windows:
                    report(ConfigError(f"{rw}: key '{key}[{j}]': key 'window': no window {a['window']!r} in "
                                       f"policy.maintenance_windows (known: {known})", at=(a, "window")))
        for key, steps in (("on_failure.steps", _get(raw, "on_failure", "steps")),):
            for j, a in enumerate(steps if isinstance(steps, list) else []):
                for k in GATE_KEYS:
                    if isinstance(a, dict) and k in a:
                        report(ConfigError(f"{rw}: key '{key}[{j}]': key {k!r}: an on_failure step cannot wait for "
                                           "an approval or a window (put the step in a rule's actions or "
                                           "escalate.steps)", at=(a, k)))
