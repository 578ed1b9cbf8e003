"""What every route shares, set once by `create_app`: the config, ledger, engine and metrics, the
JSON error shape, and whether shutdown has begun."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from flask import Response, current_app
from werkzeug.exceptions import HTTPException

from remediator.config import Config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import Ledger


@dataclass(frozen=True)
class Vigil:
    config: Config
    ledger: Ledger
    engine: Engine
    metrics: Metrics
    draining: threading.Event = field(default_factory=threading.Event)  # set on SIGTERM: /readyz says 503
    insecure_no_auth: bool = False  # --insecure-no-auth: every route open (development only)


def vigil() -> Vigil:
    return current_app.extensions["vigil"]


def error(status: int, error: str, detail: str) -> Response:
    """The JSON error body (ASCII-escaped, so a sender's lone surrogate quoted in `detail` is
    written, not raised); needs no app context, as the webhook runs outside Flask's."""
    return Response(json.dumps({"detail": detail, "error": error}, separators=(",", ":")) + "\n", status,
                    mimetype="application/json")


def http_error(exc: HTTPException) -> Response:
    """An HTTP error werkzeug raised (404, 405, 413...) in the same JSON shape."""
    return error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")
