"""The safety settings the decision core enforces: the disruption budget, the breaker, dry-run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from remediator.domain.budget import Limits, Pools
from remediator.domain.scope import Scope
from remediator.domain.windows import Window


@dataclass(frozen=True)
class Budget:
    """Nodes out of service at once (unavailable for any reason, over the managed nodes). `min_nodes`
    is the floor that lets a small pool repair one node even where a percentage would allow none.
    `pools`: per-pool limits keyed by a node label (None: one cluster-wide budget only)."""
    max_nodes: int | None = None
    max_percent: float | None = None
    max_gpu_percent: float | None = None
    min_nodes: int = 1
    max_pod_restarts_per_workload: int = 0  # pods restarted or quarantined per workload per window; 0 = no cap
    max_traffic_shift_percent: float | None = None  # share of a route's traffic moved per window
    window: float = 3600.0
    pools: Pools | None = None
    domains: Mapping[str, int] = field(default_factory=dict)  # domain kind -> max_domains out at once (default 1)

    @property
    def limits(self) -> Limits:
        return Limits(self.max_nodes, self.max_percent, self.min_nodes)


@dataclass(frozen=True)
class Breaker:
    max_actions: int = 10  # actions in `window` that open the breaker (an alert storm)
    window: float = 300.0
    reset_after: float = 0.0  # 0: only an authenticated POST /api/breaker/reset closes it


@dataclass(frozen=True)
class Safety:
    dry_run: bool = False
    max_alert_age: float = 3600.0  # older startsAt: recorded, not acted on (unless the rule allows)
    budget: Budget = field(default_factory=Budget)
    breaker: Breaker = field(default_factory=Breaker)
    scope: Scope = field(default_factory=Scope)  # the nodes' and namespaces' Vigil may change (kubernetes.*)
    windows: dict[str, Window] = field(default_factory=dict)  # policy.maintenance_windows, by name
    approval_ttl: float = 3600.0  # seconds an approval lets its step start
