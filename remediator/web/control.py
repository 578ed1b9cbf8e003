"""Pause, breaker and state: admin to change, read to look. Every change is audited with who
made it (the credential's name and the client address)."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, request

from remediator.runtime.engine import utcnow
from remediator.runtime.pause import pause_request
from remediator.web.context import error, vigil
from remediator.web.roles import actor, require

bp = Blueprint("control", __name__)


@bp.post("/api/breaker/reset")
@require("admin")
def breaker_reset():
    engine = vigil().engine
    was_open = engine.reset_breaker(utcnow(), by=actor())
    engine.wake()
    return jsonify({"breaker_open": False, "was_open": was_open})


@bp.post("/api/pause")
@require("admin")
def pause():
    now = utcnow()
    try:
        paused, reason, until = pause_request(request.get_json(silent=True), now)
    except ValueError as exc:
        return error(400, "invalid_body", str(exc))
    return jsonify(vigil().engine.set_paused(paused, now, by=actor(), reason=reason, until=until).as_dict())


@bp.post("/resume")
@require("admin")
def resume_form():
    """The status page's Resume button: a plain form (the page runs no JavaScript), then back to the
    page. A form another site posts is refused like any cross-site change (roles.cross_site)."""
    vigil().engine.set_paused(False, utcnow(), by=actor())
    return redirect("/", code=303)


@bp.get("/api/pause")
@require("read")
def pause_state():
    engine = vigil().engine
    engine.safety_state(utcnow())  # ends an expired pause
    return jsonify(engine.pause().as_dict())


@bp.get("/api/state")
@require("read")
def state():
    v = vigil()
    engine = v.engine
    s = engine.safety_state(utcnow())
    return jsonify({"paused": s.paused, "breaker_open": s.breaker_open, "dry_run": v.config.safety.dry_run,
                    "pause": engine.pause().as_dict(), "leader": engine.leader.is_leader(),
                    "identity": engine.leader.identity, "lease_holder": engine.leader.holder(),
                    "ledger_backend": v.config.ledger.backend})
