"""The incidents API (read role): a page of incidents, filtered by status and alert name, and
one incident's whole trace."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from remediator.runtime.metrics import INCIDENT_STATUSES
from remediator.web.context import error, vigil
from remediator.web.roles import require

bp = Blueprint("incidents", __name__)


@bp.get("/api/incidents")
@require("read")
def incidents():
    try:
        limit = int(request.args.get("limit", 50))
        offset = int(request.args.get("offset", 0))
    except ValueError:
        return error(400, "invalid_query", "limit and offset must be integers")
    if not 1 <= limit <= 500 or offset < 0:
        return error(400, "invalid_query", "limit must be 1-500 and offset at least 0")
    status = request.args.get("status") or None
    if status is not None and status not in INCIDENT_STATUSES:
        return error(400, "invalid_query", f"status {status[:50]!r} is not one of {', '.join(INCIDENT_STATUSES)}")
    items, total = vigil().ledger.list_incidents(status=status,
                                                 alertname=request.args.get("alertname") or None,
                                                 limit=limit, offset=offset)
    nxt = offset + limit if offset + limit < total else None
    return jsonify({"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt})


@bp.get("/api/queue")
@require("read")
def queue():
    """What waits, in the order it goes on: position, pool, what it waits for, since when."""
    items = vigil().engine.queue()
    return jsonify({"items": items, "total": len(items)})


@bp.get("/api/incidents/<int:incident_id>")
@require("read")
def incident(incident_id: int):
    found = vigil().ledger.get_incident(incident_id)
    return jsonify(found) if found else error(404, "not_found", f"no incident {incident_id}")
