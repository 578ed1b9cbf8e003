"""The Flask app (factory): webhook intake, the incidents API, breaker and pause, health and
metrics. The 200 to Alertmanager is sent only after every alert of the body is in the ledger;
the work happens on the engine's threads."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading

import orjson
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from werkzeug.exceptions import HTTPException

from remediator.cluster.kube import KubeError
from remediator.config import Config
from remediator.domain.payload import PayloadError, parse
from remediator.runtime.engine import Engine, utcnow
from remediator.runtime.metrics import Metrics
from remediator.runtime.pause import Pause, pause_request
from remediator.store.ledger import Ledger, LedgerUnavailable
from remediator.web.roles import actor, require
from remediator.web.status import bp as status_page

log = logging.getLogger(__name__)


def _error(status: int, error: str, detail: str):
    resp = jsonify({"error": error, "detail": detail})
    resp.status_code = status
    return resp


def create_app(config: Config, ledger: Ledger, engine: Engine, metrics: Metrics, *,
               insecure_no_auth: bool = False, draining: threading.Event | None = None) -> Flask:
    """`draining` set (SIGTERM): /readyz answers 503 while the webhook keeps recording."""
    app = Flask("vigil-remediator")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["vigil"] = {"config": config, "ledger": ledger, "engine": engine, "metrics": metrics,
                               "insecure_no_auth": insecure_no_auth}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal_error", "see the remediator's log")

    @app.after_request
    def count(resp: Response) -> Response:
        if request.path == "/webhook/alertmanager":
            metrics.webhook_requests.labels(str(resp.status_code)).inc()
        return resp

    @app.post("/webhook/alertmanager")
    @require("intake")
    def webhook():
        with engine.intake.busy():  # the engine holds off its decisions meanwhile
            return _webhook()

    def _webhook():
        body = request.get_data(cache=False)  # 413 above MAX_CONTENT_LENGTH
        try:
            note = parse(body)
        except PayloadError as exc:
            return _error(400, exc.error, exc.detail)
        try:
            rec = ledger.record(note.alerts, utcnow())
        except (sqlite3.Error, LedgerUnavailable) as exc:  # not the sender's fault: 503 so Alertmanager resends
            log.error("ledger write failed: %s", exc)
            return _error(503, "ledger_unavailable", "the ledger could not record the alerts; retry")
        except Exception as exc:  # this body cannot be stored as it is; resending will not help
            log.exception("alerts of group %s could not be recorded", note.group_key)
            return _error(400, "unrecordable", f"{type(exc).__name__}: {exc}"[:300])
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
        if rec.new or rec.resolved:
            engine.wake()
        return Response(orjson.dumps({"status": "recorded", "alerts": len(note.alerts), "new": rec.new,  # hot path
                                      "duplicates": rec.duplicates, "resolved": rec.resolved,
                                      "cancelled": rec.cancelled}), mimetype="application/json")

    @app.get("/api/incidents")
    @require("read")
    def incidents():
        try:
            limit = int(request.args.get("limit", 50))
            offset = int(request.args.get("offset", 0))
        except ValueError:
            return _error(400, "invalid_query", "limit and offset must be integers")
        if not 1 <= limit <= 500 or offset < 0:
            return _error(400, "invalid_query", "limit must be 1-500 and offset at least 0")
        items, total = ledger.list_incidents(status=request.args.get("status") or None,
                                             alertname=request.args.get("alertname") or None,
                                             limit=limit, offset=offset)
        nxt = offset + limit if offset + limit < total else None
        return jsonify({"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt})

    @app.get("/api/incidents/<int:incident_id>")
    @require("read")
    def incident(incident_id: int):
        found = ledger.get_incident(incident_id)
        return jsonify(found) if found else _error(404, "not_found", f"no incident {incident_id}")

    @app.post("/api/breaker/reset")
    @require("admin")
    def breaker_reset():
        was_open = engine.reset_breaker(utcnow(), by=actor())
        engine.wake()
        return jsonify({"breaker_open": False, "was_open": was_open})

    @app.post("/api/pause")
    @require("admin")
    def pause():
        now = utcnow()
        try:
            paused, reason, until = pause_request(request.get_json(silent=True), now)
        except ValueError as exc:
            return _error(400, "invalid_body", str(exc))
        p = engine.set_paused(paused, now, by=actor(), reason=reason, until=until)
        return jsonify(p.as_dict())

    @app.get("/api/pause")
    @require("read")
    def pause_state():
        engine.safety_state(utcnow())  # ends an expired pause
        p: Pause = engine.pause()
        return jsonify(p.as_dict())

    @app.get("/api/state")
    @require("read")
    def state():
        s = engine.safety_state(utcnow())
        return jsonify({"paused": s.paused, "breaker_open": s.breaker_open, "dry_run": config.safety.dry_run,
                        "pause": engine.pause().as_dict(), "leader": engine.leader.is_leader(),
                        "identity": engine.leader.identity, "lease_holder": engine.leader.holder(),
                        "ledger_backend": config.ledger.backend})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        """Ready = intake can make alerts durable (every replica takes webhooks) and no shutdown is
        under way. The cluster, its cache and the lease are reported, not required: an apiserver
        blip must not take every replica out of the webhook Service."""
        checks = {}
        if draining is not None and draining.is_set():
            checks["shutdown"] = "draining: stopping after the running actions reach a safe point"
        try:
            ledger.ping()
            checks["ledger"] = "ok"
        except (sqlite3.Error, LedgerUnavailable) as exc:
            checks["ledger"] = f"error: {exc}"
        if engine.kube is None:
            checks["kubernetes"] = "not configured (dry-run without a cluster)"
        else:
            try:
                engine.kube.ping()
                checks["kubernetes"] = "ok"
            except (KubeError, OSError, Exception) as exc:  # urllib3 connection errors included
                checks["kubernetes"] = f"error: {type(exc).__name__}"
        cache = getattr(engine, "cache", None)
        if cache is not None:
            staleness = cache.staleness()
            checks["cluster_cache"] = "ok" if cache.synced else (
                "not synced yet" if staleness == float("inf") else f"stale: {staleness:.0f} s since the last event")
        ok = "shutdown" not in checks and checks["ledger"] == "ok"
        resp = jsonify({"status": "ok" if ok else "unavailable", "checks": checks, "required": ["ledger", "shutdown"],
                        "leader": engine.leader.is_leader()})
        resp.status_code = 200 if ok else 503
        return resp

    @app.get("/metrics")
    def prom():
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.register_blueprint(status_page)
    app.extensions["vigil"]["started"] = dt.datetime.now(dt.UTC)
    return app
