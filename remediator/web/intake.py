"""POST /webhook/alertmanager: the 200 is sent only after every alert of the body is in the
ledger; the work happens on the engine's threads. While a request is in flight the engine holds
off its decisions (`remediator/runtime/intake.py`).

The hot path is a plain WSGI handler in front of the Flask app (Flask's middleware pattern:
`app.wsgi_app = Intake(app.wsgi_app, vigil)`), so a webhook skips Flask's contexts, URL routing
and response processing: about 100-150 us of a request's ~1 ms on two cores (`make bench`). It
answers like the Flask routes do, with the same credential check and JSON errors."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson
from flask import Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Request

from remediator.domain.payload import Notification, PayloadError, parse
from remediator.runtime.engine import utcnow
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import LedgerUnavailable, Recorded
from remediator.web.context import Vigil, error, http_error
from remediator.web.roles import authorize

log = logging.getLogger(__name__)
PATH = "/webhook/alertmanager"
_PATH = re.compile(r"/+webhook/+alertmanager").fullmatch  # doubled slashes too (Flask redirected those)


class Intake:
    """The WSGI app: the webhook's path here, every other path to `app` (the Flask app)."""

    def __init__(self, app: Any, v: Vigil) -> None:
        self.app, self.v = app, v

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        if not _PATH(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        req = Request(environ)
        req.max_content_length = self.v.config.max_body_bytes  # 413 on reading more
        try:
            resp = self._answer(req)
        except HTTPException as exc:  # the body over max_body_bytes, or unreadable
            resp = http_error(exc)
        except Exception:
            log.exception("unhandled error on %s %s", req.method, PATH)
            resp = error(500, "internal_error", "see the remediator's log")
        self.v.metrics.webhook_requests.labels(str(resp.status_code)).inc()
        return resp(environ, start_response)

    def _answer(self, req: Request) -> Response:
        if req.method != "POST":
            resp = Response(status=200) if req.method == "OPTIONS" else http_error(MethodNotAllowed())
            resp.headers["Allow"] = "OPTIONS, POST"  # as Flask answers for its routes
            return resp
        who = authorize(self.v, req, "intake")
        if not isinstance(who, str):
            return who
        with self.v.engine.intake.busy():
            return _record(self.v, req.get_data(cache=False))


def _record(v: Vigil, body: bytes) -> Response:
    try:
        note = parse(body)
    except PayloadError as exc:
        return error(400, exc.error, exc.detail)
    try:
        rec = v.ledger.record(note.alerts, utcnow())
    except (sqlite3.Error, LedgerUnavailable) as exc:  # not the sender's fault: 503 so Alertmanager resends
        log.error("ledger write failed: %s", exc)
        return error(503, "ledger_unavailable", "the ledger could not record the alerts; retry")
    except Exception as exc:  # this body cannot be stored as it is; resending will not help
        log.exception("alerts of group %s could not be recorded", note.group_key)
        return error(400, "unrecordable", f"{type(exc).__name__}: {exc}"[:300])
    _count(v.metrics, note, rec)
    if rec.new or rec.resolved:
        v.engine.wake()
    return Response(orjson.dumps({"status": "recorded", "alerts": len(note.alerts), "new": rec.new,  # hot path
                                  "duplicates": rec.duplicates, "resolved": rec.resolved,
                                  "cancelled": rec.cancelled}), mimetype="application/json")


def _count(metrics: Metrics, note: Notification, rec: Recorded) -> None:
    firing = sum(1 for a in note.alerts if a.status == "firing")
    if firing:
        metrics.notifications.labels("firing").inc(firing)
    if len(note.alerts) > firing:
        metrics.notifications.labels("resolved").inc(len(note.alerts) - firing)
    if rec.duplicates:
        metrics.dedupe_hits.inc(rec.duplicates)
    if note.truncated_alerts:
        metrics.truncated.inc(note.truncated_alerts)
        log.warning("Alertmanager truncated %d alerts of group %s", note.truncated_alerts, note.group_key)
