"""One snapshot of what an operator asks first: is remediation paused (why, until when), is the
breaker open, how much of the disruption budget is in use, who leads, and what happened lately.
The status page and GET /api/status render the same snapshot."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from remediator import __version__
from remediator.domain import budget as nodebudget
from remediator.domain.actions import ACTIONS
from remediator.domain.models import IN_FLIGHT
from remediator.runtime.engine import BREAKER_KEY
from remediator.store.ledger import ts

if TYPE_CHECKING:
    from remediator.runtime.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetRow:
    pool: str
    out: int
    allowed: int
    total: int
    detail: str


@dataclass(frozen=True)
class Snapshot:
    version: str
    now: str
    dry_run: bool
    pause: dict
    breaker_open: bool
    breaker_opened_at: str | None
    budget: list[BudgetRow] | None  # None: the cluster could not be read
    budget_note: str
    leader: str | None
    incidents: list[dict] = field(default_factory=list)
    total_incidents: int = 0
    queue: list[dict] = field(default_factory=list)  # what waits, in the order it goes on
    windows: list[dict] = field(default_factory=list)  # each maintenance window: open or its next opening, who waits

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def budget_rows(engine: Engine, now: dt.datetime) -> tuple[list[BudgetRow] | None, str]:
    """The node disruption budget as the next decision would see it (before its own plan): the
    managed nodes as a whole, then each pool where the config has pools."""
    if engine.kube is None:
        return None, "no cluster configured (dry-run without Kubernetes)"
    world = engine.world(now)
    if not world.cluster.available:
        return None, "the cluster view is unavailable"
    b, managed = engine.config.safety.budget, world.cluster.managed
    removes = set(ACTIONS.of("removes_node"))
    in_flight = {a.target for a in world.history if a.state in IN_FLIGHT and a.type in removes}
    out = set(nodebudget.unavailable(world.cluster, in_flight))
    whole = nodebudget.check(b.limits, set(managed), out, out)
    selector = engine.config.node_selector
    rows = [BudgetRow(f"managed nodes ({selector})" if selector else "all managed nodes", whole.unavailable,
                      whole.allowed, whole.total, whole.why)]
    if b.pools is not None:
        for pool in sorted({b.pools.pool_of(v) for v in managed.values()}):
            names = {n for n, v in managed.items() if b.pools.pool_of(v) == pool}
            c = nodebudget.check(b.pools.limits(pool), names, out & names, out & names)
            rows.append(BudgetRow(f"{b.pools.label}={pool}", c.unavailable, c.allowed, c.total, c.why))
    return rows, ""


def window_rows(engine: Engine, now: dt.datetime, queue: list[dict]) -> list[dict]:
    """Each maintenance window: open (until when) or its next opening, and the incidents waiting for it."""
    rows = []
    for name, w in sorted(engine.config.safety.windows.items()):
        state = w.state(now)
        waiting = [q["id"] for q in queue if q["reason"] == "window" and f": window {name} opens" in q["detail"]]
        rows.append({"name": name, "schedule": w.schedule, "duration_seconds": w.duration, "time_zone": w.time_zone,
                     "open": state.open, "opens_at": ts(state.opens_at) if state.opens_at else None,
                     "closes_at": ts(state.closes_at) if state.closes_at else None, "waiting": waiting})
    return rows


def leader_of(engine: Engine) -> str | None:
    """The identity holding the leader Lease as this replica last saw it ("local" without leader
    election): a pod name, never the elector object."""
    return engine.leader.holder() or None


def snapshot(engine: Engine, now: dt.datetime, *, limit: int = 20) -> Snapshot:
    state = engine.safety_state(now)
    try:
        budget, note = budget_rows(engine, now)
    except Exception as exc:  # the page still shows pause, breaker and incidents
        log.warning("budget for the status page: %s", exc)
        budget, note = None, f"could not be computed ({type(exc).__name__})"
    try:
        queue = engine.queue(now)
    except Exception as exc:  # the page still shows the rest
        log.warning("queue for the status page: %s", exc)
        queue = []
    items, total = engine.ledger.list_incidents(status=None, alertname=None, limit=limit, offset=0)
    incidents = [engine.ledger.get_incident(i["id"]) or i for i in items]
    return Snapshot(version=__version__, now=ts(now), dry_run=engine.config.safety.dry_run,
                    pause=engine.pause().as_dict() | {"paused": state.paused}, breaker_open=state.breaker_open,
                    breaker_opened_at=engine.ledger.get_state(BREAKER_KEY), budget=budget, budget_note=note,
                    leader=leader_of(engine), incidents=incidents, total_incidents=total, queue=queue,
                    windows=window_rows(engine, now, queue))
