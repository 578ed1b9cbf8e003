"""The event fast path: critical GPU events pushed straight to Alertmanager's v2 API, under exactly
the labels of the matching Prometheus rule (both built from vigil_common.pushed_alerts).

Alertmanager merges alerts with identical label sets and keeps the earliest startsAt, so the push
and the rule's alert are one alert, one incident at the remediator, with grouping, silences,
inhibitions and routing intact. The push only saves the scrape, evaluation and `for` delays.

While a condition lasts the alert is re-sent well inside its endsAt; when it clears it is sent
with endsAt = now. An XID alert lasts `xid_window` after the event, and longer while the fault is
still pending (exporters/gpu/faults.py), as the rule does. Sending happens on its own thread: an
unreachable Alertmanager never blocks scrapes or the XID event thread.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from exporters.gpu.faults import Fault
from exporters.gpu.sampler import Sampler
from exporters.gpu.xid import XidEvent
from vigil_common import xid as xid_catalog
from vigil_common.pushed_alerts import PUSHED
from vigil_common.runbooks import runbook_url

log = logging.getLogger(__name__)

CRITICAL_XIDS = frozenset(xid_catalog.NODE_ACTION)
SPECS = PUSHED  # event kind -> the rule's alert (vigil_common.pushed_alerts: one definition for both)
DEFAULT_EVENTS = tuple(SPECS)


@dataclass
class PushConfig:
    urls: list[str]
    node: str
    events: tuple[str, ...] = DEFAULT_EVENTS
    extra_labels: dict[str, str] = field(default_factory=dict)  # Prometheus' external labels, if any
    xid_window: float = 600.0  # as the rule: an XID alert lasts this long after the last event
    resend: float = 15.0
    poll: float = 1.0
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    timeout: float = 3.0


@dataclass
class _Active:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    until: datetime | None = None  # for events (XIDs): when the condition ends by itself
    last_sent: float = float("-inf")
    ended: bool = False


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertPusher:
    def __init__(self, config: PushConfig, sampler: Sampler, *, count: Callable[[str], None],
                 pods: Callable[[str], list[str]] | None = None,
                 pending: Callable[[], list[Fault]] = list,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config, self.sampler, self._count, self._clock = config, sampler, count, clock
        self._pods = pods  # uuid -> ["namespace/pod"], from pod attribution when it is on
        self._pending = pending  # the latched faults: an XID alert lasts while its fault is pending
        self._events: queue.Queue[XidEvent] = queue.Queue(maxsize=10_000)
        self._active: dict[tuple, _Active] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-push", daemon=True)
        self._backoff = 0.0
        self._next_try = 0.0
        self._ecc_seen: dict[str, float] = {}
        self._ssl = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else None
        for e in config.events:
            if e not in SPECS:
                raise ValueError(f"unknown fast-path event {e!r}; known: {', '.join(SPECS)}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def on_xid(self, event: XidEvent) -> None:
        """The XID thread's listener: never blocks (a full queue drops and counts)."""
        if "xid" not in self.config.events or event.xid not in CRITICAL_XIDS:
            return
        try:
            self._events.put_nowait(event)
            self._wake.set()
        except queue.Full:
            self._count("dropped")

    # ---- state --------------------------------------------------------------------------------

    def _labels(self, kind: str, **values: str) -> dict[str, str]:
        spec = SPECS[kind]
        labels = {"alertname": spec.alertname, **self.config.extra_labels, **spec.labels}
        labels.update({k: values[k] if k != "node" else self.config.node for k in spec.by})
        return labels

    def _upsert(self, kind: str, now: datetime, until: datetime | None, description: str, **values: str) -> None:
        labels = self._labels(kind, **values)
        key = tuple(sorted(labels.items()))
        active = self._active.get(key)
        if active is None or active.ended:
            spec = SPECS[kind]
            held = self._pods(values.get("uuid", "")) if self._pods is not None else []
            if held:  # as the rule's description says it
                description += " Pods on it: " + " ".join(held) + "."
            self._active[key] = _Active(labels, {"summary": spec.summary, "description": description,
                                                 "runbook_url": runbook_url(spec.alertname)}, now, until)
            self._wake.set()
        elif until is not None and (active.until is None or until > active.until):
            active.until = until

    def _end(self, kind: str, **values: str) -> None:
        active = self._active.get(tuple(sorted(self._labels(kind, **values).items())))
        if active is not None and not active.ended:
            active.ended = True
            active.last_sent = float("-inf")

    def _observe(self, now: datetime) -> None:
        while True:
            try:
                e = self._events.get_nowait()
            except queue.Empty:
                break
            at = datetime.fromtimestamp(e.timestamp, UTC)
            self._upsert("xid", at, at + timedelta(seconds=self.config.xid_window),
                         f"GPU {e.gpu} ({e.uuid}) on node {self.config.node} reported XID {e.xid} "
                         "(pushed by the GPU exporter's fast path).", gpu=e.gpu, uuid=e.uuid, xid=str(e.xid))
        latched = {(f.uuid, f.xid) for f in self._pending() if f.kind == "xid"}
        for a in self._active.values():
            if a.until is None or a.ended or now < a.until:
                continue
            if (a.labels.get("uuid"), a.labels.get("xid")) in latched:  # as the rule: firing while pending
                a.until = now + timedelta(seconds=self.config.resend)
            else:
                a.ended, a.last_sent = True, float("-inf")
        snap = self.sampler.sample(self.config.poll * 2)
        if snap is None:
            return  # no fresh view: keep the state we have
        devices = {d.uuid: d for d in self.sampler.session.devices()}
        for uuid, ok in snap.accessible.items():
            d = devices.get(uuid)
            if d is None or "lost" not in self.config.events:
                continue
            if ok:
                self._end("lost", gpu=str(d.index), uuid=uuid)
            else:
                self._upsert("lost", now, None, f"GPU {d.index} ({uuid}) on node {self.config.node} is not "
                             "accessible to NVML (pushed by the GPU exporter's fast path).",
                             gpu=str(d.index), uuid=uuid)
        for s in snap.samples:
            gpu, uuid = s.labels[0], s.labels[1]
            if s.name == "gpu_row_remap_failed" and "row_remap_failure" in self.config.events:
                if s.value == 1:
                    self._upsert("row_remap_failure", now, None, f"GPU {gpu} ({uuid}) on node {self.config.node} "
                                 "reports a row-remap failure (pushed by the fast path).", gpu=gpu, uuid=uuid)
                else:
                    self._end("row_remap_failure", gpu=gpu, uuid=uuid)
            elif s.name == "gpu_ecc_uncorrected_errors_total" and "ecc_uncorrected" in self.config.events:
                before = self._ecc_seen.get(uuid)
                self._ecc_seen[uuid] = s.value
                if before is not None and s.value > before:  # as the rule: an increase within 10 minutes
                    self._upsert("ecc_uncorrected", now, now + timedelta(minutes=10),
                                 f"GPU {gpu} ({uuid}) on node {self.config.node} had uncorrectable ECC errors "
                                 "(pushed by the fast path).", gpu=gpu, uuid=uuid)

    # ---- sending ------------------------------------------------------------------------------

    def _payload(self, due: list[_Active], now: datetime) -> bytes:
        out = []
        for a in due:
            ends = now if a.ended else now + timedelta(seconds=4 * self.config.resend)
            out.append({"labels": a.labels, "annotations": a.annotations, "startsAt": _iso(a.starts_at),
                        "endsAt": _iso(ends)})
        return json.dumps(out).encode()

    def _post(self, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        elif self.config.basic_auth:
            headers["Authorization"] = "Basic " + b64encode(":".join(self.config.basic_auth).encode()).decode()
        req = urllib.request.Request(url.rstrip("/") + "/api/v2/alerts", body, headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.config.timeout, context=self._ssl) as r:
            r.read()

    def _send(self, now: datetime) -> None:
        mono = time.monotonic()
        due = [a for a in self._active.values() if mono - a.last_sent >= self.config.resend]
        if not due or mono < self._next_try:
            return
        body = self._payload(due, now)
        ok = False
        for url in self.config.urls:  # every replica, as Prometheus does
            try:
                self._post(url, body)
                self._count("success")
                ok = True
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self._count("failure")
                log.warning("alert push to %s failed: %s", url, exc)
        if ok:
            self._backoff = 0.0
            for a in due:
                a.last_sent = mono
            self._active = {k: a for k, a in self._active.items() if not (a.ended and a.last_sent == mono)}
        else:
            self._backoff = min(max(self._backoff * 2, 0.5), 30.0)
            self._next_try = mono + self._backoff

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = self._clock()
                self._observe(now)
                self._send(now)
            except Exception:  # the fast path must never die; the pull path still works
                log.exception("alert push loop failed")
            self._wake.wait(self.config.poll)
            self._wake.clear()
