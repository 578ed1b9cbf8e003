"""Run one planned action against the cluster and describe the outcome for the ledger."""

from __future__ import annotations

from typing import Any

from remediator.cluster.kube import Kube, KubeError
from remediator.cluster.outcome import Outcome
from remediator.cluster.providers import EXECUTORS as REPAIRS
from remediator.cluster.repair import RepairContext, gpu_holders
from remediator.cluster.workloads import ServiceActions
from vigil_common.durations import parse_duration

__all__ = ["Outcome", "execute", "restore"]


def _seconds(params: dict, key: str, default: float) -> float:
    v = params.get(key)
    return default if v in (None, "") else parse_duration(v)


def _truthy(v: Any) -> bool:
    return str(v).lower() in ("true", "1", "yes")


def _int(v: Any, default: int | None) -> int | None:
    return default if v in (None, "") else int(v)


def _service(w: ServiceActions, type_: str, p: dict[str, Any], incident: str) -> Outcome | None:
    if type_ == "restart_pod":
        return Outcome("succeeded", w.restart_pod(p["namespace"], p["pod"], allow_bare=_truthy(p.get("allow_bare")),
                                                  grace=_int(p.get("grace_period"), None), incident=incident))
    if type_ == "rollout_restart":
        return Outcome("succeeded", w.rollout_restart(p.get("kind", "Deployment"), p["namespace"], p["name"],
                                                      incident))
    if type_ == "rollback_deployment":
        return Outcome("succeeded", w.rollback_deployment(p["namespace"], p["name"], incident))
    if type_ == "scale_deployment":
        r = w.scale_deployment(p["namespace"], p["name"], replicas=_int(p.get("replicas"), None),
                               step=_int(p.get("step"), None), low=_int(p.get("min"), 0),
                               high=_int(p.get("max"), 1000), incident=incident)
        return Outcome("succeeded", r.pop("detail"), r)
    if type_ == "quarantine_pod":
        r = w.quarantine_pod(p["namespace"], p["pod"], p.get("label", "vigil.io/serving"), str(p.get("value", "false")),
                             incident)
        return Outcome("succeeded", r.pop("detail"), r)
    if type_ == "shift_traffic":
        r = w.shift_traffic(p["namespace"], p["route"], p["from"], p["to"], float(p.get("step", 100)),
                            _int(p.get("rule_index"), 0), incident)
        return Outcome("succeeded", r.pop("detail"), r)
    if type_ == "failover_service":
        r = w.failover_service(p["namespace"], p["service"], dict(p["selector"]), incident)
        return Outcome("succeeded", r.pop("detail"), r)
    return None


def restore(w: ServiceActions, type_: str, p: dict[str, Any], result: dict[str, Any], incident: str) -> str:
    """Undo a shift_traffic or failover_service with the state recorded when it ran."""
    if type_ == "shift_traffic":
        return w.restore_route(p["namespace"], p["route"], result["original"], int(result.get("rule_index", 0)),
                               incident)
    return w.restore_service(p["namespace"], p["service"], result["original"], incident)


def _drain_scope(repair: RepairContext | None, params: dict[str, Any]) -> tuple[set[str] | None, str]:
    """`scope: gpu` evicts only the pods holding the faulty GPU; the whole node when that is unknown."""
    if str(params.get("scope", "node")) != "gpu":
        return None, "scope node: every pod"
    if repair is None:
        return None, "scope gpu, but GPU attribution is unavailable: every pod on the node"
    pods, why = gpu_holders(repair, params["node"], str(params.get("uuid", "")))
    return pods, f"scope gpu: {why}" + ("; draining the whole node" if pods is None else "")


def execute(kube: Kube, type_: str, params: dict[str, Any], incident: str,
            repair: RepairContext | None = None) -> Outcome:
    try:
        if type_ in REPAIRS:
            if repair is None:
                return Outcome("failed", f"{type_} needs the repair settings", reason="not_configured")
            return REPAIRS[type_](repair, params, incident)
        service = _service(ServiceActions(kube), type_, params, incident)
        if service is not None:
            return service
        if type_ == "cordon_node":
            return Outcome("succeeded", kube.cordon(params["node"], incident))
        if type_ == "uncordon_node":
            return Outcome("succeeded", kube.uncordon(params["node"], incident))
        if type_ == "taint_node":
            return Outcome("succeeded", kube.taint(params["node"], params.get("key", "vigil.io/unhealthy"),
                                                   str(params.get("value", "true")),
                                                   params.get("effect", "NoSchedule"), incident))
        if type_ == "drain_node":
            grace = params.get("grace_period")
            only, scope = _drain_scope(repair, params)
            r = kube.drain(params["node"], timeout=_seconds(params, "timeout", 300.0),
                           force_after=_seconds(params, "force_after", 0.0),
                           grace_period=None if grace in (None, "") else int(grace), incident=incident, only=only)
            data = {"evicted": r.evicted, "deleted": r.deleted, "skipped": r.skipped, "remaining": r.remaining,
                    "blocked_by": r.blocked_by, "scope": scope}
            if r.complete:
                return Outcome("succeeded", f"drained ({scope}): {len(r.evicted)} evicted, {len(r.deleted)} "
                                            f"force-deleted, {len(r.skipped)} DaemonSet/mirror pods left", data)
            pdbs = sorted(set(r.blocked_by.values()))
            detail = f"{len(r.remaining)} pods still on the node at the deadline"
            if pdbs:
                detail += f"; blocked by PodDisruptionBudget {', '.join(pdbs)}"
            return Outcome("blocked", detail, data, reason="pdb" if pdbs else "drain_timeout")
    except KubeError as exc:
        return Outcome("failed", str(exc), {"status": exc.status, "permanent": exc.permanent}, reason="api_error")
    except (ValueError, KeyError) as exc:
        return Outcome("failed", f"bad parameter: {exc}", reason="bad_params")
    except Exception as exc:  # e.g. the API server unreachable: the action failed, the engine goes on
        return Outcome("failed", f"{type(exc).__name__}: {exc}", reason="error")
    return Outcome("failed", f"no executor for action {type_!r}", reason="unknown_action")
