"""Availability of pod and workload actions: how many replicas or endpoints a step leaves Ready,
against the rule's min_available (a number, or a percentage of the desired replicas; default 1:
never the last healthy replica). Pure; used by the availability rail (remediator.domain.rails)."""

from __future__ import annotations

import math

from remediator.domain.models import ClusterView, PlannedAction


def min_available(spec: int | str | None, total: int) -> int:
    """A rule's min_available ("n" or "n%" of `total`, rounded up); default 1."""
    if spec is None:
        return 1
    text = str(spec).strip()
    if text.endswith("%"):
        return math.ceil(total * float(text[:-1]) / 100)
    return int(text)


def pod_availability(p: PlannedAction, spec: int | str | None, cluster: ClusterView) -> str:
    """Why this pod action would go below min_available ("" if it would not): a quarantine first by
    the Services that select the pod (their ready endpoints), then, like a restart, by its
    workload's Ready replicas, whether or not a Service selects it."""
    pod = cluster.pods.get(p.target)
    if pod is None:
        return ""
    if p.type == "quarantine_pod":
        for svc in pod.services:
            ready = cluster.service_endpoints.get(svc, frozenset())
            need = min_available(spec, len(ready))
            left = len(ready - {p.target})
            if left < need:
                return (f"Service {svc}: quarantining {p.target} would leave {left} ready endpoints of "
                        f"{len(ready)}, min_available {need}")
    if pod.workload:  # every pod action keeps the workload's Ready replicas, a Service selecting it or not
        others = [k for k, v in cluster.pods.items() if v.workload == pod.workload and v.ready and k != p.target]
        desired = cluster.workloads[pod.workload].desired if pod.workload in cluster.workloads else len(others) + 1
        need = min_available(spec, desired)
        if len(others) < need:
            verb = "quarantining" if p.type == "quarantine_pod" else "restarting"
            return (f"{pod.workload}: {verb} {p.target} would leave {len(others)} other Ready of {desired} "
                    f"replicas, min_available {need}")
    return ""


def _int_param(params: dict, key: str, default: int) -> int:
    v = params.get(key)
    return default if v in (None, "") else int(v)


def scale_availability(p: PlannedAction, spec: int | str | None, cluster: ClusterView) -> str:
    """A scale-down must keep min_available replicas (the executor's own clamp: min, default 0)."""
    workload = f"Deployment/{p.target}"
    w = cluster.workloads.get(workload)
    if w is None:
        return ""
    try:
        prm = p.params
        target = _int_param(prm, "replicas", w.desired + _int_param(prm, "step", 0))
        target = max(_int_param(prm, "min", 0), min(_int_param(prm, "max", 1000) or 1000, target))
    except ValueError:
        return ""  # the executor refuses bad parameters
    need = min_available(spec, w.desired)
    if target < w.desired and target < need:
        return f"{workload}: scaling {w.desired} -> {target} replicas would go below min_available {need}"
    return ""
