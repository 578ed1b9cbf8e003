"""What both exporters' HTTP servers share: a threaded WSGI server on a daemon thread, quiet logs,
the exposition content type and blackbox's scrape-timeout offset."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what every Prometheus 2.x and 3.x parses
SCRAPE_TIMEOUT_OFFSET = 0.5  # as blackbox_exporter: answer before Prometheus gives up


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: Callable, host: str, port: int) -> Any:
    """Start serving in a daemon thread; returns the server (call .shutdown() to stop)."""
    httpd = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    return httpd


def serve_or_report(app: Callable, host: str, port: int, prog: str) -> Any | None:
    """`serve`, or one line on stderr and None when the address cannot be bound (the CLI exits 2)."""
    try:
        return serve(app, host, port)
    except OSError as exc:
        print(f"{prog}: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return None


def wait_for_termination() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
