"""The Flask app (factory): one blueprint per concern (incidents, control, health, the status
page) behind the webhook's plain WSGI handler (`intake`), JSON errors everywhere, and what the
routes share in one `Vigil` context."""

from __future__ import annotations

import logging
import threading

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from remediator.config import Config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import Ledger
from remediator.web import approvals, control, health, incidents, intake, status
from remediator.web.context import Vigil, error, http_error

log = logging.getLogger(__name__)
BLUEPRINTS = (incidents.bp, control.bp, approvals.bp, health.bp, status.bp)


def _unexpected(exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error(500, "internal_error", "see the remediator's log")


def create_app(config: Config, ledger: Ledger, engine: Engine, metrics: Metrics, *,
               insecure_no_auth: bool = False, draining: threading.Event | None = None) -> Flask:
    """`draining` set (SIGTERM): /readyz answers 503 while the webhook keeps recording."""
    app = Flask("vigil-remediator", static_folder=None)  # no static assets: no open file route
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    v = Vigil(config, ledger, engine, metrics, draining if draining is not None else threading.Event(),
              insecure_no_auth)
    app.extensions["vigil"] = v
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, _unexpected)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    app.wsgi_app = intake.Intake(app.wsgi_app, v)  # the webhook, in front of Flask
    return app
