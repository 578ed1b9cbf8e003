"""The exporter's HTTP surface as a plain WSGI app: /metrics, /healthz and, for the simulated
backend only, /simulate. No web framework: the exporter's memory budget is 40 MiB."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from exporters.gpu.collector import scrape_timeout
from exporters.gpu.exporter import GpuExporter
from exporters.gpu.simulated import FaultError, SimulatedNVML
from exporters.http import CONTENT_TYPE, SCRAPE_TIMEOUT_OFFSET, serve

__all__ = ["CONTENT_TYPE", "make_app", "serve"]

MAX_CONCURRENT_SCRAPES = 40
MAX_BODY = 64 * 1024

StartResponse = Callable[..., Any]


def _json(start_response: StartResponse, status: str, body: dict) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _error(start_response: StartResponse, status: str, error: str, detail: str) -> Iterable[bytes]:
    return _json(start_response, status, {"error": error, "detail": detail})


def _scrape_bound(environ: dict) -> float | None:
    raw = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
    try:
        return max(float(raw) - SCRAPE_TIMEOUT_OFFSET, 0.1) if raw else None
    except ValueError:
        return None


class _Simulate:
    def __init__(self, sim: SimulatedNVML) -> None:
        self.sim = sim

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "GET":
            return _json(start_response, "200 OK", {"faults": self.sim.faults()})
        if method != "POST":
            return _error(start_response, "405 Method Not Allowed", "method_not_allowed",
                          "use GET to list faults or POST to inject one")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return _error(start_response, "413 Content Too Large", "body_too_large",
                          f"body must be at most {MAX_BODY} bytes")
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(start_response, "400 Bad Request", "invalid_json", str(exc))
        if not isinstance(body, dict):
            return _error(start_response, "400 Bad Request", "invalid_body",
                          'expected an object such as {"gpu": 3, "fault": "xid", "xid": 79}')
        if body.get("fault") == "sxid":
            return self._sxid(body, start_response)
        if body.get("fault") == "reboot":  # the whole node: no 'gpu'
            self.sim.reboot()
            return _json(start_response, "200 OK", {"applied": body, "faults": self.sim.faults()})
        gpu, fault, xid = body.get("gpu"), body.get("fault"), body.get("xid")
        if not isinstance(gpu, int) or isinstance(gpu, bool):
            return _error(start_response, "400 Bad Request", "invalid_body", "'gpu' must be an integer index")
        if not isinstance(fault, str):
            return _error(start_response, "400 Bad Request", "invalid_body", "'fault' must be a string")
        try:
            self.sim.inject(gpu, fault, xid)
        except FaultError as exc:
            return _error(start_response, "400 Bad Request", "invalid_fault", str(exc))
        return _json(start_response, "200 OK", {"applied": body, "faults": self.sim.faults()})


    def _sxid(self, body: dict, start_response: StartResponse) -> Iterable[bytes]:
        """{"fault": "sxid", "nvswitch": 0, "sxid": 24007}: an NVSwitch line in the simulated kernel log."""
        switch = body.get("nvswitch")
        if not isinstance(switch, int) or isinstance(switch, bool):
            return _error(start_response, "400 Bad Request", "invalid_body", "'nvswitch' must be an integer index")
        try:
            self.sim.inject_sxid(switch, body.get("sxid"))
        except FaultError as exc:
            return _error(start_response, "400 Bad Request", "invalid_fault", str(exc))
        return _json(start_response, "200 OK", {"applied": body, "faults": self.sim.faults()})


def make_app(exporter: GpuExporter) -> Callable:
    sim = exporter.simulated

    def metrics(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        body = exporter.exposition()
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]
    simulate = _Simulate(sim) if sim is not None else None
    slots = threading.BoundedSemaphore(MAX_CONCURRENT_SCRAPES)

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            if not slots.acquire(blocking=False):
                return _error(start_response, "503 Service Unavailable", "too_many_scrapes",
                              f"more than {MAX_CONCURRENT_SCRAPES} scrapes in flight")
            token = scrape_timeout.set(_scrape_bound(environ))
            try:
                return metrics(environ, start_response)
            finally:
                scrape_timeout.reset(token)
                slots.release()
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":  # ready while a scrape can start (not every slot held by hung collections)
            if not slots.acquire(blocking=False):
                return _error(start_response, "503 Service Unavailable", "scrapes_saturated",
                              f"all {MAX_CONCURRENT_SCRAPES} scrape slots are in use")
            slots.release()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/simulate" and simulate is not None:
            return simulate(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html")])
            return [b'<html><body><h1>Vigil GPU exporter</h1><a href="/metrics">metrics</a></body></html>']
        return _error(start_response, "404 Not Found", "not_found", f"no route {path}")

    return app

