"""A Node object as the rails see it (NodeView), and who owns a field according to managedFields."""

from __future__ import annotations

from typing import Any

from remediator.domain.models import NodeView, Taint

GPU_RESOURCE = "nvidia.com/gpu"


def condition(obj: Any, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in (obj.status.conditions if obj.status else None) or [])


def field_owner(obj: Any, *path: str) -> str:
    """The manager whose managedFields entry holds the field (e.g. "spec", "unschedulable"); "" if none."""
    for entry in obj.metadata.managed_fields or []:
        fields = entry.fields_v1 or {}
        for part in path:
            fields = fields.get(f"f:{part}") if isinstance(fields, dict) else None
        if fields is not None:
            return entry.manager or ""
    return ""


def node_view(n: Any, managed: bool) -> NodeView:
    gpus = (n.status.capacity or {}).get(GPU_RESOURCE, "0") if n.status else "0"
    unschedulable = bool(n.spec.unschedulable)
    return NodeView(
        n.metadata.name, unschedulable, int(gpus) if str(gpus).isdigit() else 0, dict(n.metadata.annotations or {}),
        labels=dict(n.metadata.labels or {}), ready=condition(n, "Ready"),
        taints=tuple(Taint(t.key, t.effect, t.value or "") for t in n.spec.taints or []), managed=managed,
        unschedulable_owner=field_owner(n, "spec", "unschedulable") if unschedulable else "")


