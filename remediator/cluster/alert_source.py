"""The firing set as Alertmanager holds it: GET /api/v2/alerts, the active alerts routed to Vigil's
receiver (not silenced or inhibited), turned into the webhook's Alert type. With HA Alertmanager any
peer answers for the cluster (they gossip alerts), so the first that answers is used."""

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

    def firing(self) -> list[Alert]:
        """The active alerts for the receiver; AlertSourceError when no Alertmanager answered."""
        errors = []
        for url in self.urls:
            try:
                return self._firing(url)
            except (requests.RequestException, ValueError, AlertSourceError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {str(exc)[:200]}")
        raise AlertSourceError("; ".join(errors) or "no Alertmanager configured")

    def _firing(self, url: str) -> list[Alert]:
        params = {"active": "true", "silenced": "false", "inhibited": "false", "unprocessed": "false",
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
            if not isinstance(raw, dict):
                continue
            try:  # the API's alert is the webhook's, but for its status: parsed and validated the same way
                out.append(parse_alert({**raw, "status": "firing"}, i))
            except PayloadError:
                continue
        return out
