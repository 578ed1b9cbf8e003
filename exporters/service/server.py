"""HTTP: /metrics, /healthz, and a blackbox-style /probe?target=&module= that probes once, now,
within Prometheus' scrape timeout minus 0.5 s, and answers with that probe's metrics only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from exporters.http import CONTENT_TYPE, SCRAPE_TIMEOUT_OFFSET
from exporters.service.exporter import ServiceExporter

StartResponse = Callable[..., object]


def _json(start_response: StartResponse, status: str, body: dict) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def probe_once(exp: ServiceExporter, target: str, module: str, timeout: float | None) -> bytes:
    result = exp.prober.probe(target, module, timeout)
    r = CollectorRegistry()
    Gauge("probe_success", "1 if the probe succeeded.", registry=r).set(1 if result.success else 0)
    Gauge("probe_duration_seconds", "Duration of the probe.", registry=r).set(result.duration)
    if exp.config.modules[module].prober != "tcp":
        Gauge("probe_http_status_code", "HTTP status of the probe (0: none).", registry=r).set(result.status_code)
    if result.ttft is not None:
        Gauge("probe_time_to_first_token_seconds", "Time to the first streamed token.", registry=r).set(result.ttft)
    failed = Gauge("probe_failed_due_to", "1 for the reason the probe failed.", ["reason"], registry=r)
    if not result.success:
        failed.labels(result.reason).set(1)
    return generate_latest(r)


def make_app(exp: ServiceExporter) -> Callable:
    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = generate_latest(exp.metrics.registry)
        elif path == "/probe":
            q = parse_qs(environ.get("QUERY_STRING", ""))
            target, module = (q.get("target") or [""])[0], (q.get("module") or [""])[0]
            if not re.fullmatch(r"(https?|tcp)://[^/\s]+(/.*)?", target):
                return _json(start_response, "400 Bad Request", {"error": "invalid_target",
                             "detail": "target must be http(s)://host:port or tcp://host:port"})
            if module not in exp.config.modules:
                return _json(start_response, "400 Bad Request", {"error": "unknown_module",
                             "detail": f"module must be one of {', '.join(exp.config.modules)}"})
            raw = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
            try:
                timeout = max(float(raw) - SCRAPE_TIMEOUT_OFFSET, 0.1) if raw else None
            except ValueError:
                timeout = None
            body = probe_once(exp, target, module, timeout)
        elif path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        elif path == "/readyz":  # ready once the probe loop runs (before, every series would be missing)
            if not exp.scheduler.running():
                return _json(start_response, "503 Service Unavailable", {"error": "not_probing",
                             "detail": "the probe scheduler is not running"})
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        else:
            return _json(start_response, "404 Not Found", {"error": "not_found", "detail": f"no route {path}"})
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    return app
