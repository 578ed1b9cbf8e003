"""Run one planned action against the cluster and describe the outcome for the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediator.cluster.kube import Interrupted, Kube, KubeError
from remediator.cluster.workloads import ServiceActions
from vigil_common.durations import parse_duration


@dataclass(frozen=True)
class Outcome:
    state: str  # succeeded | failed | blocked
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def as_result(self) -> dict[str, Any]:
        return {"detail": self.detail, "reason": self.reason or self.state, **self.data}


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


def _dispatch(kube: Kube, type_: str, params: dict[str, Any], incident: str) -> Outcome | None:
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
        return _drain(kube, params, incident)
    return None


def _drain(kube: Kube, params: dict[str, Any], incident: str) -> Outcome:
    grace = params.get("grace_period")
    r = kube.drain(params["node"], timeout=_seconds(params, "timeout", 300.0),
                   force_after=_seconds(params, "force_after", 0.0),
                   grace_period=None if grace in (None, "") else int(grace), incident=incident)
    data = {"evicted": r.evicted, "deleted": r.deleted, "skipped": r.skipped, "remaining": r.remaining,
            "blocked_by": r.blocked_by}
    if r.complete:
        return Outcome("succeeded", f"drained: {len(r.evicted)} evicted, {len(r.deleted)} force-deleted, "
                                    f"{len(r.skipped)} DaemonSet/mirror pods left", data)
    pdbs = sorted(set(r.blocked_by.values()))
    detail = f"{len(r.remaining)} pods still on the node at the deadline"
    if pdbs:
        detail += f"; blocked by PodDisruptionBudget {', '.join(pdbs)}"
    return Outcome("blocked", detail, data, reason="pdb" if pdbs else "drain_timeout")


def deadline_of(type_: str, params: dict[str, Any], deadlines: dict[str, float] | None) -> float | None:
    """Seconds the action may spend retrying transient errors: its type's configured deadline, or
    the default; a drain gets at least its own timeout plus a minute."""
    d = (deadlines or {}).get(type_)
    if type_ == "drain_node":
        d = max(d or 0.0, _seconds(params, "timeout", 300.0) + 60.0)
    return d


def execute(kube: Kube, type_: str, params: dict[str, Any], incident: str,
            deadlines: dict[str, float] | None = None) -> Outcome:
    """Run the action as one idempotent step, retried on transient API errors until its deadline.
    `interrupted`: the process is stopping; the action is left to resume after the restart."""
    try:
        outcome = kube.attempt(type_, lambda: _dispatch(kube, type_, params, incident),
                               deadline_of(type_, params, deadlines))
        if outcome is not None:
            return outcome
    except Interrupted:
        return Outcome("interrupted", "the remediator is stopping; resumed after the restart",
                       reason="interrupted")
    except KubeError as exc:
        return Outcome("failed", str(exc), {"status": exc.status, "permanent": exc.permanent}, reason="api_error")
    except (ValueError, KeyError) as exc:
        return Outcome("failed", f"bad parameter: {exc}", reason="bad_params")
    except Exception as exc:  # e.g. the API server unreachable: the action failed, the engine goes on
        return Outcome("failed", f"{type(exc).__name__}: {exc}", reason="error")
    return Outcome("failed", f"no executor for action {type_!r}", reason="unknown_action")
