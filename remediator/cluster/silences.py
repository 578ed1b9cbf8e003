"""Alertmanager v2 silences around planned disruptions (a GPU reset or a node reboot takes the GPU
off the bus and the exporter down: those alerts must not start a second remediation).

POST /api/v2/silences answers {"silenceID": ...}; an update that changes matchers or times may
expire the old silence and return a new id, so the returned id is always the one kept.
DELETE /api/v2/silence/{id} expires it (200 also for an already expired one)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import requests

from remediator.cluster.bounded import Bounded
from remediator.domain.policy import compile_template
from remediator.domain.repair import SilenceSettings

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


class SilenceError(Exception):
    pass


def matchers(templates: tuple[str, ...], **values: str) -> list[dict]:
    """Alertmanager API matchers from `label="value"` templates rendered over node and uuid."""
    out = []
    for t in templates:
        compiled = compile_template(t, "silence matcher")
        text = compiled if isinstance(compiled, str) else compiled.render(values)
        m = _MATCHER.match(text)
        if not m:
            raise SilenceError(f'silence matcher {text!r} is not of the form label="value"')
        op = m.group(2)
        out.append({"name": m.group(1), "value": m.group(3).replace('\\"', '"'), "isRegex": "~" in op,
                    "isEqual": not op.startswith("!")})
    return out


@dataclass
class Silences:
    settings: SilenceSettings
    session: requests.Session | None = None

    def __post_init__(self) -> None:
        self.session = self.session or requests.Session()
        self._bounded = Bounded(2, "alertmanager")  # a trickling answer fails at the timeout, not never
        if self.settings.bearer_token:
            self.session.headers["Authorization"] = f"Bearer {self.settings.bearer_token}"

    @property
    def enabled(self) -> bool:
        return bool(self.settings.alertmanager_url)

    def _url(self, path: str) -> str:
        return f"{self.settings.alertmanager_url.rstrip('/')}/api/v2/{path}"

    def create(self, *, node: str, uuid: str, incident: str, reason: str, now: dt.datetime) -> str:
        """A silence from now for the grace period; returns its id."""
        body = {"matchers": matchers(self.settings.matchers, node=node, uuid=uuid),
                "startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(seconds=self.settings.grace)).isoformat(),
                "createdBy": "vigil", "comment": f"vigil incident {incident}: {reason} on {node}"}
        try:
            r = self._bounded.call(lambda: self.session.post(self._url("silences"), json=body,
                                                             timeout=self.settings.timeout), self.settings.timeout)
        except requests.RequestException as exc:
            raise SilenceError(f"Alertmanager did not answer: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise SilenceError(f"Alertmanager refused the silence: {r.status_code} {r.text[:200]}")
        return r.json()["silenceID"]

    def expire(self, silence_id: str) -> str:
        try:
            r = self._bounded.call(lambda: self.session.delete(self._url(f"silence/{silence_id}"),
                                                               timeout=self.settings.timeout), self.settings.timeout)
        except requests.RequestException as exc:
            raise SilenceError(f"Alertmanager did not answer: {type(exc).__name__}") from exc
        if r.status_code == 200:
            return f"silence {silence_id} expired"
        if r.status_code in (404, 500) and "not found" in r.text.lower():  # 0.25 answers 500, 0.26+ 404
            return f"silence {silence_id} was already gone"
        raise SilenceError(f"Alertmanager did not expire silence {silence_id}: {r.status_code} {r.text[:200]}")

    def state(self, silence_id: str) -> str:
        r = self._bounded.call(lambda: self.session.get(self._url(f"silence/{silence_id}"),
                                                        timeout=self.settings.timeout), self.settings.timeout)
        r.raise_for_status()
        return r.json()["status"]["state"]
