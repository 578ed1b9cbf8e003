"""The parts of vigil.yaml for the waiting queue and the reconcile loop.

    engine:
      reconcile_interval: 30s     # every waiting incident is decided again at least this often
      max_wait: 24h               # then it is handed to people (VigilRemediationStalled), never dropped
    alertmanager:                 # the firing set, read back from Alertmanager's API (optional)
      url: http://alertmanager:9093
      receiver: vigil-remediator  # a regex of the receiver(s) that deliver to Vigil
      reconcile: true             # default: on when url is set
      timeout: 5s
      bearer_token_file: ...      # or bearer_token_env
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

from remediator.credentials import read_secret
from vigil_common.config import Section


@dataclass(frozen=True)
class QueueSettings:
    reconcile_interval: float = 30.0
    max_wait: float = 86400.0


@dataclass(frozen=True)
class AlertSource:
    url: str | None = None
    receiver: str = "vigil-remediator"
    reconcile: bool = False
    timeout: float = 5.0
    bearer_token: str | None = None


def parse_queue(engine: Section) -> QueueSettings:
    interval = engine.duration("reconcile_interval", 30.0, positive=True)
    max_wait = engine.duration("max_wait", 86400.0, positive=True)
    if max_wait < interval:
        engine.fail("max_wait", f"at least reconcile_interval ({interval:g} s)")
    return QueueSettings(reconcile_interval=interval, max_wait=max_wait)


def parse_alert_source(raw: Any, where: str) -> AlertSource:
    sec = Section(raw, where, ("url", "receiver", "reconcile", "timeout", "bearer_token_file", "bearer_token_env"))
    url = sec.string("url", None)
    if url is not None and not re2.match(r"^https?://[^/\s]+", url):
        sec.fail("url", f"expected an http:// or https:// URL, got {url!r}")
        url = None
    receiver = sec.string("receiver", "vigil-remediator")
    try:
        re2.compile(receiver)
    except re2.error as exc:  # RE2, as Alertmanager's Go regexes
        sec.fail("receiver", f"not a valid regular expression: {exc}")
    return AlertSource(url=url.rstrip("/") if url else None, receiver=receiver,
                       reconcile=sec.boolean("reconcile", url is not None) and url is not None,
                       timeout=sec.duration("timeout", 5.0, positive=True),
                       bearer_token=read_secret(sec, "bearer_token_file", "bearer_token_env"))
