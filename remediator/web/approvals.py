"""Answering a gated step (admin role): POST /api/incidents/<id>/approve and /deny with a reason,
audited with the credential's name; the status page's buttons post the same as plain forms."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, request

from remediator.domain.approvals import APPROVED, DENIED
from remediator.runtime.approvals import NotAwaiting
from remediator.web.context import error, vigil
from remediator.web.roles import actor, require

bp = Blueprint("approvals", __name__)
MAX_REASON = 500


def _answer(incident_id: int, verdict: str, body: object):
    """The answer's JSON, or an error response."""
    if not isinstance(body, dict):
        return error(400, "invalid_body", 'expected a JSON object such as {"reason": "checked the node"}')
    reason, step = body.get("reason"), body.get("step")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        return error(400, "invalid_body", f"'reason' is required: a non-empty string of at most {MAX_REASON} "
                     "characters")
    if step is not None and not isinstance(step, str):
        return error(400, "invalid_body", "'step' must be a string such as 'reboot_node(node-7)'")
    v = vigil()
    if v.ledger.get_incident(incident_id) is None:
        return error(404, "not_found", f"no incident {incident_id}")
    try:
        answer = v.engine.approvals.answer(incident_id, verdict, by=actor(), reason=reason.strip(), step=step)
    except NotAwaiting as exc:
        return error(409, "not_awaiting_approval", str(exc))
    v.engine.wake()
    return jsonify(answer)


@bp.post("/api/incidents/<int:incident_id>/approve")
@require("admin")
def approve(incident_id: int):
    return _answer(incident_id, APPROVED, request.get_json(silent=True))


@bp.post("/api/incidents/<int:incident_id>/deny")
@require("admin")
def deny(incident_id: int):
    return _answer(incident_id, DENIED, request.get_json(silent=True))


@bp.post("/incidents/<int:incident_id>/<any(approve, deny):verb>")
@require("admin")
def answer_form(incident_id: int, verb: str):
    """The status page's buttons: a plain same-origin form (the page runs no JavaScript), then back."""
    verdict = APPROVED if verb == "approve" else DENIED
    answered = _answer(incident_id, verdict, {"reason": request.form.get("reason") or f"{verb}d on the status page"})
    return answered if answered.status_code >= 400 else redirect("/", code=303)
