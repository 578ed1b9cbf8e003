"""The waiting queue's order, as a pure function: the most severe first, then the oldest alert,
and the pools (the disruption budget's node pools) served in turn, so that one pool's backlog never
starves another's. The engine decides due incidents in this order, so a freed budget slot goes to
the head of the queue in its pool; the API and the status page show the same order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from remediator.domain.budget import Pools
from remediator.domain.models import ClusterView

T = TypeVar("T")
SEVERITY_RANK = {"critical": 0, "page": 0, "error": 1, "warning": 2, "info": 3}
UNKNOWN_SEVERITY = 2.5  # after warning, before info


def severity_rank(labels: dict[str, str]) -> float:
    severity = labels.get("severity") if isinstance(labels, dict) else None  # a poisoned row fails in its decision
    return SEVERITY_RANK.get(severity.lower(), UNKNOWN_SEVERITY) if isinstance(severity, str) else UNKNOWN_SEVERITY


def pool_of(labels: dict[str, str], cluster: ClusterView, pools: Pools | None) -> str:
    """The budget pool of an incident's node ("" without pools, or without a known node)."""
    node = cluster.nodes.get(labels.get("node", "")) if pools is not None and isinstance(labels, dict) else None
    return pools.pool_of(node) if node is not None and pools is not None else ""


def order(items: Sequence[T], *, labels: Callable[[T], dict[str, str]], key: Callable[[T], tuple],
          pool: Callable[[T], str]) -> list[T]:
    """Severity, then `key` (the alert's startsAt, then its id), then one from each pool in turn."""
    ranked = sorted(items, key=lambda x: (severity_rank(labels(x)), *key(x)))
    queues: dict[str, list[T]] = {}
    for x in ranked:
        queues.setdefault(pool(x), []).append(x)
    if len(queues) <= 1:
        return ranked
    out: list[T] = []
    lanes = [list(reversed(q)) for q in queues.values()]
    while lanes:
        for lane in lanes:
            out.append(lane.pop())
        lanes = [lane for lane in lanes if lane]
    return out
