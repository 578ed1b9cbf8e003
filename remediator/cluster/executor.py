"""Run one planned action against the cluster and describe the outcome for the ledger.

Each action type declared in `remediator.domain.actions.ACTIONS` is bound here to exactly one
executor function (`@EXECUTORS.bind("type")`); restorable types also bind a restorer and an owner
reader (who owns the change now, for the ownership rail). A test checks declared == bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remediator.cluster import providers
from remediator.cluster import repair as node_repair
from remediator.cluster.kube import Interrupted, Kube, KubeError
from remediator.cluster.outcome import Outcome
from remediator.cluster.repair import RepairContext, gpu_holders
from remediator.cluster.workloads import ServiceActions
from remediator.domain.actions import ACTIONS, Registry
from vigil_common.durations import parse_duration


@dataclass(frozen=True)
class Clients:
    kube: Kube
    workloads: ServiceActions
    repair: RepairContext | None = None  # repairs: their settings and Prometheus (GPU attribution)


Executor = Callable[[Clients, dict[str, Any], str], Outcome]
Restorer = Callable[[Clients, dict[str, Any], dict[str, Any], str], str]
OwnerReader = Callable[[Clients, dict[str, Any], dict[str, Any]], str]


class Executors:
    """Binds each declared action type to one executor; tests may build a fresh one."""

    def __init__(self, actions: Registry) -> None:
        self.actions = actions
        self.run: dict[str, Executor] = {}
        self.restorers: dict[str, Restorer] = {}
        self.owners: dict[str, OwnerReader] = {}

    def _binder(self, table: dict, name: str) -> Callable:
        if name not in self.actions:
            raise ValueError(f"action {name!r} is not declared in remediator.domain.actions")
        if name in table:
            raise ValueError(f"action {name!r} bound twice")

        def bind(fn: Callable) -> Callable:
            table[name] = fn
            return fn
        return bind

    def bind(self, name: str) -> Callable[[Executor], Executor]:
        return self._binder(self.run, name)

    def restorer(self, name: str) -> Callable[[Restorer], Restorer]:
        return self._binder(self.restorers, name)

    def owner(self, name: str) -> Callable[[OwnerReader], OwnerReader]:
        return self._binder(self.owners, name)

    def execute(self, kube: Kube, type_: str, params: dict[str, Any], incident: str,
                deadlines: dict[str, float] | None = None, repair: RepairContext | None = None) -> Outcome:
        """Run the action as one idempotent step (read, decide from the object's state, write),
        retried on transient API errors until its deadline (see remediator.cluster.retry)."""
        fn = self.run.get(type_)
        if fn is None:
            return Outcome("failed", f"no executor for action {type_!r}", reason="unknown_action")
        clients = Clients(kube, ServiceActions(kube), repair)
        return _guarded(lambda: kube.attempt(type_, lambda: fn(clients, params, incident),
                                             deadline_of(type_, params, deadlines)))

    def restore(self, kube: Kube, type_: str, params: dict[str, Any], result: dict[str, Any],
                incident: str) -> Outcome:
        fn = self.restorers[type_]
        return _guarded(lambda: kube.attempt(f"restore {type_}", lambda: Outcome(
            "succeeded", fn(Clients(kube, ServiceActions(kube)), params, result, incident))))

    def owner_of(self, kube: Kube, type_: str, params: dict[str, Any], result: dict[str, Any]) -> str:
        """Who owns the change now ("vigil:<incident>", or who else); "unknown" if it cannot be read.
        `result` is what the action recorded when it ran (what it set)."""
        try:
            return kube.attempt(f"owner of {type_}", lambda: self.owners[type_](Clients(kube, ServiceActions(kube)),
                                                                                params, result),
                                kube.retrier.policy.request_timeout)
        except Exception as exc:
            return f"unknown ({type(exc).__name__})"


def deadline_of(type_: str, params: dict[str, Any], deadlines: dict[str, float] | None) -> float | None:
    """Seconds the action may spend retrying transient errors: its type's configured deadline, or
    the default (None); a drain gets at least its own timeout plus a minute."""
    d = (deadlines or {}).get(type_)
    if type_ == "drain_node":
        d = max(d or 0.0, _seconds(params, "timeout", 300.0) + 60.0)
    if ACTIONS[type_].repair or ACTIONS[type_].silenced or type_ == "validate_node":  # Jobs and reboots wait long
        d = max(d or 0.0, 3600.0)
    return d


def _guarded(fn: Callable[[], Outcome]) -> Outcome:
    try:
        return fn()
    except Interrupted:
        return Outcome("interrupted", "the remediator is stopping; resumed after the restart", reason="interrupted")
    except KubeError as exc:
        reason = "not_owner" if exc.status == 409 and "not cordoned by" in str(exc) else "api_error"
        return Outcome("failed" if reason == "api_error" else "blocked", str(exc),
                       {"status": exc.status, "permanent": exc.permanent}, reason=reason)
    except (ValueError, KeyError) as exc:
        return Outcome("failed", f"bad parameter: {exc}", reason="bad_params")
    except Exception as exc:  # e.g. the API server unreachable: the action failed, the engine goes on
        return Outcome("failed", f"{type(exc).__name__}: {exc}", reason="error")


EXECUTORS = Executors(ACTIONS)


def execute(kube: Kube, type_: str, params: dict[str, Any], incident: str,
            deadlines: dict[str, float] | None = None, repair: RepairContext | None = None) -> Outcome:
    return EXECUTORS.execute(kube, type_, params, incident, deadlines, repair)


def _seconds(params: dict, key: str, default: float) -> float:
    v = params.get(key)
    return default if v in (None, "") else parse_duration(v)


def _truthy(v: Any) -> bool:
    return str(v).lower() in ("true", "1", "yes")


def _int(v: Any, default: int | None) -> int | None:
    return default if v in (None, "") else int(v)


def _marker_owner(marker: str, now: Any, set_by_vigil: Any) -> str:
    """Vigil owns the change while its marker is there AND the object still holds what Vigil set: a
    marker surviving someone else's edit proves nothing."""
    if not marker:
        return "nobody (the change was undone)"
    if now != set_by_vigil:
        return f"someone else (changed since incident {marker.split(':', 1)[0]} set it)"
    return f"vigil:{marker.split(':', 1)[0]}"


# ---- node actions ---------------------------------------------------------------------------------

@EXECUTORS.bind("cordon_node")
def _cordon(c: Clients, p: dict, incident: str) -> Outcome:
    return Outcome("succeeded", c.kube.cordon(p["node"], incident))


@EXECUTORS.bind("uncordon_node")
def _uncordon(c: Clients, p: dict, incident: str) -> Outcome:
    return Outcome("succeeded", c.kube.uncordon(p["node"], incident, only_incident=_truthy(p.get("only_incident"))))


@EXECUTORS.bind("taint_node")
def _taint(c: Clients, p: dict, incident: str) -> Outcome:
    return Outcome("succeeded", c.kube.taint(p["node"], p.get("key", "vigil.io/unhealthy"), str(p.get("value", "true")),
                                             p.get("effect", "NoSchedule"), incident))


def _drain_scope(repair: RepairContext | None, p: dict) -> tuple[set[str] | None, str]:
    """`scope: gpu` evicts only the pods holding the faulty GPU; the whole node when that is unknown."""
    if str(p.get("scope", "node")) != "gpu":
        return None, "scope node: every pod"
    if repair is None:
        return None, "scope gpu, but GPU attribution is unavailable: every pod on the node"
    pods, why = gpu_holders(repair, p["node"], str(p.get("uuid", "")))
    return pods, f"scope gpu: {why}" + ("; draining the whole node" if pods is None else "")


@EXECUTORS.bind("drain_node")
def _drain(c: Clients, p: dict, incident: str) -> Outcome:
    """`scope: gpu` first keeps new pods off the GPU until its reset ends (`reset_gpu` lifts it)."""
    grace = p.get("grace_period")
    held = (node_repair.hold_gpu(c.kube, p["node"], str(p.get("uuid", "")), incident)
            if str(p.get("scope", "node")) == "gpu" else "")
    only, scope = _drain_scope(c.repair, p)
    r = c.kube.drain(p["node"], timeout=_seconds(p, "timeout", 300.0), force_after=_seconds(p, "force_after", 0.0),
                     grace_period=None if grace in (None, "") else int(grace), incident=incident, only=only)
    data = {"evicted": r.evicted, "deleted": r.deleted, "skipped": r.skipped, "remaining": r.remaining,
            "blocked_by": r.blocked_by, "scope": scope, **({"held": held} if held else {})}
    if r.complete:
        return Outcome("succeeded", f"drained ({scope}): {len(r.evicted)} evicted, {len(r.deleted)} force-deleted, "
                                    f"{len(r.skipped)} DaemonSet/mirror pods left" + (f"; {held}" if held else ""),
                       data)
    pdbs = sorted(set(r.blocked_by.values()))
    detail = f"{len(r.remaining)} pods still on the node at the deadline"
    if pdbs:
        detail += f"; blocked by PodDisruptionBudget {', '.join(pdbs)}"
    return Outcome("blocked", detail, data, reason="pdb" if pdbs else "drain_timeout")


# ---- workload and traffic actions -----------------------------------------------------------------

@EXECUTORS.bind("restart_pod")
def _restart_pod(c: Clients, p: dict, incident: str) -> Outcome:
    r = c.workloads.restart_pod(p["namespace"], p["pod"], allow_bare=_truthy(p.get("allow_bare")),
                                grace=_int(p.get("grace_period"), None), force=_truthy(p.get("force_delete")),
                                incident=incident)
    if r.get("blocked_by"):
        return Outcome("blocked", r["detail"], r, reason="pdb")
    return Outcome("succeeded", r.pop("detail"), r)


@EXECUTORS.bind("rollout_restart")
def _rollout_restart(c: Clients, p: dict, incident: str) -> Outcome:
    return Outcome("succeeded", c.workloads.rollout_restart(p.get("kind", "Deployment"), p["namespace"], p["name"],
                                                            incident))


@EXECUTORS.bind("rollback_deployment")
def _rollback(c: Clients, p: dict, incident: str) -> Outcome:
    return Outcome("succeeded", c.workloads.rollback_deployment(p["namespace"], p["name"], incident))


@EXECUTORS.bind("scale_deployment")
def _scale(c: Clients, p: dict, incident: str) -> Outcome:
    r = c.workloads.scale_deployment(p["namespace"], p["name"], replicas=_int(p.get("replicas"), None),
                                     step=_int(p.get("step"), None), low=_int(p.get("min"), 0) or 0,
                                     high=_int(p.get("max"), 1000) or 1000, incident=incident)
    return Outcome("succeeded", r.pop("detail"), r)


@EXECUTORS.bind("quarantine_pod")
def _quarantine(c: Clients, p: dict, incident: str) -> Outcome:
    r = c.workloads.quarantine_pod(p["namespace"], p["pod"], p.get("label", "vigil.io/serving"),
                                   str(p.get("value", "false")), incident)
    return Outcome("succeeded", r.pop("detail"), r)


@EXECUTORS.bind("shift_traffic")
def _shift(c: Clients, p: dict, incident: str) -> Outcome:
    r = c.workloads.shift_traffic(p["namespace"], p["route"], p["from"], p["to"], float(p.get("step", 100)),
                                  _int(p.get("rule_index"), 0) or 0, incident)
    return Outcome("succeeded", r.pop("detail"), r)


@EXECUTORS.restorer("shift_traffic")
def _restore_route(c: Clients, p: dict, result: dict, incident: str) -> str:
    return c.workloads.restore_route(p["namespace"], p["route"], result["original"], int(result.get("rule_index", 0)),
                                     incident)


@EXECUTORS.owner("shift_traffic")
def _route_owner(c: Clients, p: dict, result: dict) -> str:
    marker, rules = c.workloads.current("httproute", p["namespace"], p["route"], "vigil.io/shifted-for")
    index = int(result.get("rule_index", 0))
    refs = (rules[index].get("backendRefs") or []) if index < len(rules) else []
    return _marker_owner(marker, {r["name"]: r.get("weight", 1) for r in refs}, result.get("weights"))


@EXECUTORS.bind("failover_service")
def _failover(c: Clients, p: dict, incident: str) -> Outcome:
    r = c.workloads.failover_service(p["namespace"], p["service"], dict(p["selector"]), incident)
    return Outcome("succeeded", r.pop("detail"), r)


@EXECUTORS.restorer("failover_service")
def _restore_service(c: Clients, p: dict, result: dict, incident: str) -> str:
    return c.workloads.restore_service(p["namespace"], p["service"], result["original"], incident)


@EXECUTORS.owner("failover_service")
def _service_owner(c: Clients, p: dict, result: dict) -> str:
    marker, selector = c.workloads.current("service", p["namespace"], p["service"], "vigil.io/failed-over-for")
    return _marker_owner(marker, selector, dict(p["selector"]))


# ---- repairs (remediator/cluster/repair.py, providers.py) -----------------------------------------

def _repair(fn: providers.Executor) -> Executor:
    """The executor of one repair: the cluster-layer function, given the repair settings."""
    def run(c: Clients, p: dict, incident: str) -> Outcome:
        if c.repair is None:
            return Outcome("failed", "repair actions need the repair settings", reason="not_configured")
        return fn(c.repair, p, incident)
    return run


for _type, _fn in {"reset_gpu": node_repair.reset_gpu, "reboot_node": providers.reboot_node,
                   "replace_node": providers.replace_node, "validate_node": node_repair.validate_node,
                   "mark_rma_candidate": providers.mark_rma_candidate}.items():
    EXECUTORS.bind(_type)(_repair(_fn))
