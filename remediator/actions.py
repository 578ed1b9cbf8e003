"""Run one planned action against the cluster and describe the outcome for the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediator.durations import parse_duration
from remediator.kube import Kube, KubeError


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


def execute(kube: Kube, type_: str, params: dict[str, Any], incident: str) -> Outcome:
    try:
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
    except KubeError as exc:
        return Outcome("failed", str(exc), {"status": exc.status, "permanent": exc.permanent}, reason="api_error")
    except (ValueError, KeyError) as exc:
        return Outcome("failed", f"bad parameter: {exc}", reason="bad_params")
    except Exception as exc:  # e.g. the API server unreachable: the action failed, the engine goes on
        return Outcome("failed", f"{type(exc).__name__}: {exc}", reason="error")
    return Outcome("failed", f"no executor for action {type_!r}", reason="unknown_action")
