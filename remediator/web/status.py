"""The status page at / (read role): server-rendered HTML from a sandboxed, autoescaping jinja2
template, no JavaScript and no build step; it refreshes itself every 30 s with a meta tag.
GET /api/status is the same snapshot as JSON, and GET /api/audit the recent audit trail."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from jinja2 import select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from remediator.runtime.engine import utcnow
from remediator.runtime.status import snapshot
from remediator.web.context import error, vigil
from remediator.web.roles import may, require
from remediator.web.status_template import PAGE

bp = Blueprint("status", __name__)
_ENV = SandboxedEnvironment(autoescape=select_autoescape(default=True, default_for_string=True))
_PAGE = _ENV.from_string(PAGE)


@bp.get("/")
@require("read")
def page() -> Response:
    v = vigil()
    snap = snapshot(v.engine, utcnow())
    html = _PAGE.render(s=snap, ui=v.config.ui, dashboards=v.config.ui.grafana_url, admin=may(v, request, "admin"))
    return Response(html, content_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; "
                             "style-src 'unsafe-inline'; img-src 'none'; form-action 'self'; frame-ancestors 'none'"})


@bp.get("/api/status")
@require("read")
def status_json():
    return jsonify(snapshot(vigil().engine, utcnow()).as_dict())


@bp.get("/api/audit")
@require("read")
def audit():
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 500:
        return error(400, "invalid_query", "limit must be an integer 1-500")
    recent = getattr(vigil().ledger, "recent_audit", None)
    if recent is None:
        return error(501, "not_supported", "this ledger backend keeps no global audit listing")
    return jsonify({"items": recent(limit)})
