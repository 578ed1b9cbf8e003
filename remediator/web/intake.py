"""POST /webhook/alertmanager: the 200 is sent only after every alert of the body is in the
ledger; the work happens on the engine's threads. While a request is in flight the engine holds
off its decisions (`remediator/runtime/intake.py`)."""

from __future__ import annotations

import logging
import sqlite3

import orjson
from flask import Blueprint, Response, request

from remediator.domain.payload import Notification, PayloadError, parse
from remediator.runtime.engine import utcnow
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import LedgerUnavailable, Recorded
from remediator.web.context import error, vigil
from remediator.web.roles import require

log = logging.getLogger(__name__)
bp = Blueprint("intake", __name__)
PATH = "/webhook/alertmanager"


@bp.post(PATH)
@require("intake")
def webhook():
    v = vigil()
    with v.engine.intake.busy():
        return _record(v)


def _record(v):
    body = request.get_data(cache=False)  # 413 above MAX_CONTENT_LENGTH
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


@bp.after_app_request
def count(resp: Response) -> Response:
    if request.path == PATH:
        vigil().metrics.webhook_requests.labels(str(resp.status_code)).inc()
    return resp
