"""Liveness, readiness and metrics (no credentials: probes and Prometheus scrape them).

Ready = intake can make alerts durable (every replica takes webhooks) and no shutdown is under
way. The cluster, its cache and the lease are reported, not required: an apiserver blip must not
take every replica out of the webhook Service."""

from __future__ import annotations

import sqlite3

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from remediator.store.ledger import LedgerUnavailable
from remediator.web.context import Vigil, vigil

bp = Blueprint("health", __name__)
REQUIRED = ("ledger", "shutdown")


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    v = vigil()
    checks = {}
    if v.draining.is_set():
        checks["shutdown"] = "draining: stopping after the running actions reach a safe point"
    checks["ledger"] = _ledger(v)
    checks["kubernetes"] = _kubernetes(v)
    cache = getattr(v.engine, "cache", None)
    if cache is not None:
        staleness = cache.staleness()
        checks["cluster_cache"] = "ok" if cache.synced else (
            "not synced yet" if staleness == float("inf") else f"stale: {staleness:.0f} s since the last event")
    ok = "shutdown" not in checks and checks["ledger"] == "ok"
    resp = jsonify({"status": "ok" if ok else "unavailable", "checks": checks, "required": list(REQUIRED),
                    "leader": v.engine.leader.is_leader()})
    resp.status_code = 200 if ok else 503
    return resp


def _ledger(v: Vigil) -> str:
    try:
        v.ledger.ping()
        return "ok"
    except (sqlite3.Error, LedgerUnavailable) as exc:
        return f"error: {exc}"


def _kubernetes(v: Vigil) -> str:
    if v.engine.kube is None:
        return "not configured (dry-run without a cluster)"
    try:
        v.engine.kube.ping()
        return "ok"
    except Exception as exc:  # KubeError, urllib3 connection errors, anything the client raised
        return f"error: {type(exc).__name__}"


@bp.get("/metrics")
def prom():
    return Response(generate_latest(vigil().metrics.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
