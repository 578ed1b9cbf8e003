"""The parts of vigil.yaml for people on call: where Vigil's own notifications go, and the links
the status page shows.

    notifications:                 # VigilRemediation alerts when Vigil acts, is blocked or gives up
      alertmanager_urls: [http://alertmanager-0:9093, http://alertmanager-1:9093]
      timeout: 5s                  # per POST; sending never blocks the engine
      ends_after: 5m               # endsAt = now + this: the alert expires by itself
      labels: {cluster: prod}      # added to every notification
      events: [acted, blocked, gave_up]
      bearer_token_file: ...       # if the Alertmanagers want one (or bearer_token_env)
    ui:
      grafana_url: http://grafana:3000/d/vigil-remediation
      alertmanager_url: http://alertmanager:9093
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from remediator.credentials import read_secret
from vigil_common.config import Section

EVENTS = ("acted", "blocked", "gave_up", "awaiting_approval")


@dataclass(frozen=True)
class Notifications:
    alertmanager_urls: tuple[str, ...] = ()
    timeout: float = 5.0
    ends_after: float = 300.0
    labels: dict[str, str] = field(default_factory=dict)
    events: frozenset[str] = frozenset(EVENTS)
    bearer_token: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.alertmanager_urls)


@dataclass(frozen=True)
class UI:
    grafana_url: str | None = None
    alertmanager_url: str | None = None


def _url(sec: Section, k: str, value: Any) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        sec.fail(k, f"expected an http:// or https:// URL, got {value!r}")
        return None
    return value.rstrip("/")


def parse_notifications(raw: Any, where: str) -> Notifications:
    sec = Section(raw, where, ("alertmanager_urls", "timeout", "ends_after", "labels", "events",
                               "bearer_token_file", "bearer_token_env"))
    urls = sec.get("alertmanager_urls") or []
    if not isinstance(urls, list):
        sec.fail("alertmanager_urls", "a list of Alertmanager base URLs")
        urls = []
    good = tuple(u for u in (_url(sec, "alertmanager_urls", u) for u in urls) if u)
    events = sec.get("events", list(EVENTS))
    if not isinstance(events, list) or not all(e in EVENTS for e in events):
        sec.fail("events", f"a list of {', '.join(EVENTS)}, got {events!r}")
        events = list(EVENTS)
    token = read_secret(sec, "bearer_token_file", "bearer_token_env")
    return Notifications(alertmanager_urls=good, timeout=sec.duration("timeout", 5.0, positive=True),
                         ends_after=sec.duration("ends_after", 300.0, positive=True), labels=sec.str_map("labels"),
                         events=frozenset(events), bearer_token=token)


def parse_ui(raw: Any, where: str) -> UI:
    sec = Section(raw, where, ("grafana_url", "alertmanager_url"))
    return UI(grafana_url=_url(sec, "grafana_url", sec.get("grafana_url")),
              alertmanager_url=_url(sec, "alertmanager_url", sec.get("alertmanager_url")))
