"""Vigil's own notifications: when it acts, is blocked or gives up, it posts a `VigilRemediation`
alert to every configured Alertmanager (v2 API), so people's existing routes (Slack, PagerDuty)
carry it. Labels: incident, action, result, target (plus the configured ones); endsAt is short, so
the alert expires by itself. Sending runs on its own thread from a bounded queue, with a timeout
per POST: a slow or absent Alertmanager never blocks the engine (a full queue drops and counts)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from remediator.domain.models import Decision, Incident
from remediator.oncall_config import Notifications

log = logging.getLogger(__name__)
ALERTNAME = "VigilRemediation"
STALLED = "VigilRemediationStalled"
QUEUE_SIZE = 1000


@dataclass(frozen=True)
class Event:
    kind: str  # acted | blocked | gave_up | awaiting_approval
    incident: int
    action: str
    result: str  # succeeded, failed, blocked, dry_run, gave_up, awaiting_approval
    target: str
    summary: str
    detail: str = ""
    annotations: tuple[tuple[str, str], ...] = ()  # more annotations (the approve and deny commands)
    alertname: str = "VigilRemediation"  # VigilRemediationStalled: a wait handed to people


def decision_events(incident: Incident, d: Decision) -> list[Event]:
    """A blocked decision, a dry-run one (what Vigil would have done), and a wait handed to people
    (VigilRemediationStalled), as notifications."""
    if d.outcome == "handed_over" and d.reason == "denied" and incident.id is not None:  # a person said no
        action, _, target = d.step.partition("(")
        return [Event("gave_up", incident.id, action or "none", "denied", target.rstrip(")"),
                      f"{incident.alertname}: {d.step} denied, handed to people", d.detail)]
    if d.outcome == "handed_over" and incident.id is not None:
        return [Event("gave_up", incident.id, "none", "handed_over", incident.labels.get("node", ""),
                      f"{incident.alertname}: waited too long, handed to people ({d.reason})", d.detail,
                      alertname=STALLED)]
    if d.outcome not in ("blocked", "dry_run") or incident.id is None:
        return []
    kind, result = ("blocked", "blocked") if d.outcome == "blocked" else ("acted", "dry_run")
    what = f"{incident.alertname}: {'blocked' if kind == 'blocked' else 'dry-run, would act'}"
    detail = f"{d.reason}: {d.detail}" if d.reason else d.detail
    if not d.actions:
        return [Event(kind, incident.id, "none", result, "", f"{what} ({d.reason})", detail)]
    return [Event(kind, incident.id, a.type, result, a.target, f"{what}: {a.type} {a.target}", detail)
            for a in d.actions]


def approval_event(incident: Incident, step: str, action: str, target: str, detail: str) -> Event:
    """A gated step waits for a person: what, where, and the commands that answer."""
    approve = f"remediator approve {incident.id} --reason '...'"
    deny = f"remediator deny {incident.id} --reason '...'"
    return Event("awaiting_approval", incident.id or 0, action, "awaiting_approval", target,
                 f"Vigil awaits approval for {step} (incident {incident.id}, {incident.alertname or '?'})", detail,
                 (("step", step), ("approve_command", approve), ("deny_command", deny)))


def action_event(incident_id: int, action: str, state: str, target: str, detail: str) -> Event:
    kind = "blocked" if state == "blocked" else "acted"
    return Event(kind, incident_id, action, state, target, f"Vigil {action} {target}: {state}", detail)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Notifier:
    def __init__(self, cfg: Notifications, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self._queue: queue.Queue[Event | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._dropped = 0
        self.sent = Counter("vigil_remediation_notifications_total",
                            "VigilRemediation alerts posted to Alertmanager, by result (sent, failed, dropped).",
                            ["result"], registry=registry)
        for r in ("sent", "failed", "dropped"):
            self.sent.labels(r)

    def start(self) -> None:
        if self.cfg.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
            self._thread = None

    def notify(self, event: Event) -> None:
        """Queue one notification; never blocks."""
        if not self.cfg.enabled or event.kind not in self.cfg.events:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.sent.labels("dropped").inc()
            self._dropped += 1
            if self._dropped % 100 == 1:  # a storm must not turn into a storm of log lines
                log.warning("notification queue full: %d dropped so far (latest: %s for incident %d)",
                            self._dropped, event.kind, event.incident)

    def alert(self, e: Event, now: dt.datetime) -> dict:
        labels = {**self.cfg.labels, "alertname": e.alertname, "incident": str(e.incident), "action": e.action,
                  "result": e.result, "target": e.target, "event": e.kind}
        labels = {k: v for k, v in labels.items() if v}  # an empty value is no label in Alertmanager
        return {"labels": labels, "annotations": {"summary": e.summary, **({"description": e.detail}
                                                                           if e.detail else {}), **dict(e.annotations)},
                "startsAt": _rfc3339(now), "endsAt": _rfc3339(now + dt.timedelta(seconds=self.cfg.ends_after))}

    def _run(self) -> None:
        while True:
            e = self._queue.get()
            if e is None:
                return
            body = json.dumps([self.alert(e, dt.datetime.now(dt.UTC))]).encode()
            for url in self.cfg.alertmanager_urls:
                self._post(url, body)

    def _post(self, url: str, body: bytes) -> None:
        req = urllib.request.Request(f"{url}/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.cfg.bearer_token:
            req.add_header("Authorization", f"Bearer {self.cfg.bearer_token}")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:
                resp.read()
            self.sent.labels("sent").inc()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.sent.labels("failed").inc()
            log.warning("notification to %s failed: %s", url, getattr(exc, "reason", exc))
