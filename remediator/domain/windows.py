"""Maintenance windows: when disruptive steps may start. A window opens on a cron schedule
(croniter) in its own time zone (zoneinfo) and stays open for a duration, as kured's
--start-time/--end-time/--reboot-days with --time-zone. Pure: the clock is the caller's `now`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class WindowError(ValueError):
    """An invalid schedule, duration or time zone (check-config reports it)."""


@dataclass(frozen=True)
class WindowState:
    open: bool
    opens_at: dt.datetime | None  # the next opening (UTC) when closed
    closes_at: dt.datetime | None  # the end of the current opening (UTC) when open


@dataclass(frozen=True)
class Window:
    """name; schedule: a 5-field cron expression, when it opens; duration: seconds it stays open;
    time_zone: an IANA name the schedule is read in (DST included)."""
    name: str
    schedule: str
    duration: float
    time_zone: str = "UTC"

    @classmethod
    def parse(cls, name: str, schedule: str, duration: float, time_zone: str = "UTC") -> Window:
        if not isinstance(schedule, str) or len(schedule.split()) != 5 or not croniter.is_valid(schedule):
            raise WindowError(f"schedule {schedule!r} is not a 5-field cron expression (minute hour day month "
                              "weekday), e.g. '0 22 * * 1-5'")
        if not duration or duration <= 0:
            raise WindowError("duration must be positive, e.g. 6h")
        zone(time_zone)
        return cls(name, schedule, float(duration), time_zone)

    def state(self, now: dt.datetime) -> WindowState:
        """Open or not at `now` (aware), and when it opens next or closes."""
        local = now.astimezone(zone(self.time_zone))
        minute = local.replace(second=0, microsecond=0)
        start = minute if croniter.match(self.schedule, minute) else \
            croniter(self.schedule, minute).get_prev(dt.datetime)
        closes = start.astimezone(dt.UTC) + dt.timedelta(seconds=self.duration)
        if now < closes:
            return WindowState(True, None, closes)
        nxt = croniter(self.schedule, local).get_next(dt.datetime)
        return WindowState(False, nxt.astimezone(dt.UTC), None)

    def describe(self) -> str:
        return f"{self.name} ({self.schedule!r} for {self.duration / 3600:g}h, {self.time_zone})"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise WindowError(f"time zone {name!r} is not an IANA time zone name such as 'Europe/Berlin'") from exc
