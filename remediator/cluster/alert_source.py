"""The firing set as Alertmanager holds it: GET /api/v2/alerts, every alert routed to Vigil's receiver
(active, silenced or inhibited), turned into the webhook's Alert type with its state. HA peers gossip
silences and the notification log, not alerts (Prometheus sends each alert to every peer), so a peer
that just restarted answers with fewer alerts until Prometheus sends them again: the reconcile treats
an absence as a resolve only after it lasted a while. An answer that does not parse is unknown,
never an empty set."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from remediator.cluster.bounded import Bounded
from remediator.domain.payload import Alert, PayloadError, parse_alert


class AlertSourceError(Exception):
    pass


@dataclass
class AlertmanagerAlerts:
    urls: tuple[str, ...]
    receiver: str
    timeout: float = 5.0
    bearer_token: str | None = None

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self._bounded = Bounded(2, "alertmanager")  # a trickling answer fails at the timeout, not never
        if self.bearer_token:
            self.session.headers["Authorization"] = f"Bearer {self.bearer_token}"

    def firing(self) -> list[tuple[Alert, str]]:
        """(alert, state) for the receiver's alerts, state `active`, `suppressed` (silenced, inhibited:
        Vigil's own repair silences too) or `unprocessed`; AlertSourceError when no Alertmanager
        answered with a readable list."""
        errors = []
        for url in self.urls:
            try:
                return self._firing(url)
            except (requests.RequestException, ValueError, AlertSourceError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {str(exc)[:200]}")
        raise AlertSourceError("; ".join(errors) or "no Alertmanager configured")

    def _firing(self, url: str) -> list[tuple[Alert, str]]:
        params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true",
                  "receiver": self.receiver}
        r = self._bounded.call(lambda: self.session.get(f"{url}/api/v2/alerts", params=params, timeout=self.timeout),
                               self.timeout)
        if r.status_code != 200:
            raise AlertSourceError(f"HTTP {r.status_code}: {r.text[:200]}")
        body = r.json()
        if not isinstance(body, list):
            raise AlertSourceError("expected a JSON list of alerts")
        out = []
        for i, raw in enumerate(body):
            try:  # the API's alert is the webhook's, but for its status: parsed and validated the same way
                state = raw["status"]["state"]
                out.append((parse_alert({**raw, "status": "firing"}, i), str(state)))
            except (PayloadError, TypeError, KeyError) as exc:  # one unreadable entry: the answer is unknown
                raise AlertSourceError(f"alert {i} of the answer is not an Alertmanager alert: {exc}") from exc
        return out
