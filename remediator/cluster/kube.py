"""Everything the remediator does to Kubernetes, through the official client. The only module that
imports `kubernetes`; client errors are wrapped by status into KubeError (permanent or not)."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from remediator.cluster.nodeview import GPU_RESOURCE, node_view
from remediator.domain.models import CORDONED_BY_ANNOTATION, FIELD_MANAGER, INCIDENT_ANNOTATION

log = logging.getLogger(__name__)
__all__ = ["GPU_RESOURCE", "DrainResult", "Kube", "KubeError"]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
COMPONENT = "vigil-remediator"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """4xx other than 409/429 will not change by retrying."""
        return 400 <= self.status < 500 and self.status not in (409, 429)


def _wrap(exc: ApiException) -> KubeError:
    return KubeError(exc.status or 0, f"{exc.status} {exc.reason}: {(exc.body or '')[:300]}")


@dataclass
class DrainResult:
    evicted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # force-deleted after the deadline (opt-in)
    skipped: list[str] = field(default_factory=list)  # DaemonSet and mirror pods
    blocked_by: dict[str, str] = field(default_factory=dict)  # pod -> PodDisruptionBudget
    remaining: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.remaining


class Kube:
    def __init__(self, kubeconfig: str | None = None, *, event_namespace: str = "default", node_selector: str = "",
                 api_client: Any = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if api_client is None:
            cfg = client.Configuration()
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            else:
                config.load_incluster_config(client_configuration=cfg)
            api_client = client.ApiClient(cfg)
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.event_namespace = event_namespace
        self.node_selector = node_selector
        self._clock, self._sleep = clock, sleep

    # ---- reads ---------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            client.VersionApi(self.api).get_code(_request_timeout=3)
        except ApiException as exc:
            raise _wrap(exc) from exc

    # ---- node actions (each idempotent) ------------------------------------------------------

    def _node(self, name: str):
        try:
            return self.core.read_node(name)
        except ApiException as exc:
            raise _wrap(exc) from exc

    def _patch_node(self, name: str, body: dict) -> None:
        try:
            self.core.patch_node(name, body, field_manager=FIELD_MANAGER)
        except ApiException as exc:
            raise _wrap(exc) from exc

    def cordon(self, name: str, incident: str) -> str:
        """Cordon under Vigil's field manager, so managedFields says who owns the cordon."""
        node = self._node(name)
        if node.spec.unschedulable:
            return "already unschedulable"  # someone (maybe us, before a restart) did it: not ours to mark
        self._patch_node(name, {"spec": {"unschedulable": True},
                                "metadata": {"annotations": {CORDONED_BY_ANNOTATION: "vigil",
                                                             INCIDENT_ANNOTATION: incident}}})
        self.event(node, "VigilCordon", f"Cordoned by Vigil for incident {incident}")
        return "cordoned"

    def uncordon(self, name: str, incident: str, *, only_incident: bool = False) -> str:
        """Uncordon only a cordon Vigil still owns (for this incident, with only_incident)."""
        node = self._node(name)
        if not node.spec.unschedulable:
            return "already schedulable"
        owner = node_view(node, True).cordon_owner  # from managedFields
        wanted = f"vigil:{incident}" if only_incident else "vigil:"
        if not (owner == wanted if only_incident else owner.startswith(wanted)):
            raise KubeError(409, f"node {name} was not cordoned by {'this incident' if only_incident else 'Vigil'} "
                            f"(spec.unschedulable is owned by {owner}); refusing to uncordon")
        self._patch_node(name, {"spec": {"unschedulable": None},
                                "metadata": {"annotations": {CORDONED_BY_ANNOTATION: None, INCIDENT_ANNOTATION: None},
                                             "resourceVersion": node.metadata.resource_version}})
        self.event(node, "VigilUncordon", f"Uncordoned by Vigil for incident {incident}")
        return "uncordoned"

    def taint(self, name: str, key: str, value: str, effect: str, incident: str) -> str:
        """Add the taint, keeping everyone else's. The patch carries the resourceVersion read, so a
        concurrent change (the node controller adds node.kubernetes.io/unschedulable right after a
        cordon) is a 409, never a lost taint; then read again and retry, a few times."""
        for attempt in range(5):
            node = self._node(name)
            taints = list(node.spec.taints or [])
            if any(t.key == key and t.effect == effect and (t.value or "") == value for t in taints):
                return "already tainted"
            taints = [t for t in taints if not (t.key == key and t.effect == effect)]
            taints.append(client.V1Taint(key=key, value=value or None, effect=effect))
            body = {"spec": {"taints": [self.api.sanitize_for_serialization(t) for t in taints]},
                    "metadata": {"resourceVersion": node.metadata.resource_version}}
            try:
                self._patch_node(name, body)
                break
            except KubeError as exc:
                if exc.status != 409 or attempt == 4:
                    raise
                self._sleep(0.2 * (attempt + 1))
        self.event(node, "VigilTaint", f"Tainted {key}={value}:{effect} by Vigil for incident {incident}")
        return "tainted"

    def _pods_on(self, node: str) -> list:
        try:
            return self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        except ApiException as exc:
            raise _wrap(exc) from exc

    def blocking_pdb(self, pod) -> str:
        try:
            pdbs = self.policy.list_namespaced_pod_disruption_budget(pod.metadata.namespace).items
        except ApiException:
            return "unknown"
        labels = pod.metadata.labels or {}
        for pdb in pdbs:
            sel = pdb.spec.selector
            if sel and sel.match_labels and all(labels.get(k) == v for k, v in sel.match_labels.items()):
                return f"{pod.metadata.namespace}/{pdb.metadata.name}"
        return "unknown"

    def _drain_candidates(self, name: str, result: DrainResult, only: set[str] | None = None) -> dict[str, Any]:
        """The pods a drain evicts: all but DaemonSet and mirror pods (recorded as skipped) and finished ones;
        with `only`, just those ("namespace/name"), e.g. the pods holding one faulty GPU."""
        pending: dict[str, Any] = {}
        for pod in self._pods_on(name):
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            if only is not None and key not in only:
                continue
            owners = pod.metadata.owner_references or []
            if any(o.kind == "DaemonSet" for o in owners) or MIRROR_ANNOTATION in (pod.metadata.annotations or {}):
                result.skipped.append(key)
            elif pod.status.phase not in ("Succeeded", "Failed"):
                pending[key] = pod
        return pending

    def _evict(self, pod: Any, grace_period: int | None) -> int:
        """One Eviction; returns the HTTP status (201, 404 gone, 429 refused by a PDB)."""
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace}}
        if grace_period is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
        try:
            self.core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
        except ApiException as exc:
            if exc.status in (404, 429):
                return exc.status
            raise _wrap(exc) from exc
        return 201

    def _evict_until(self, pending: dict[str, Any], deadline: float, grace_period: int | None,
                     result: DrainResult) -> dict[str, Any]:
        """Evict until every pod is accepted or the deadline passes, retrying 429s with backoff."""
        evicted: dict[str, Any] = {}
        delay = 1.0
        while pending and self._clock() < deadline:
            for key, pod in list(pending.items()):
                if self._evict(pod, grace_period) == 429:
                    result.blocked_by[key] = self.blocking_pdb(pod)
                    continue
                result.blocked_by.pop(key, None)
                evicted[key] = pending.pop(key)
            if pending:
                self._sleep(min(delay, max(deadline - self._clock(), 0)))
                delay = min(delay * 2, 10.0)
        return evicted

    def _force_delete(self, pending: dict[str, Any], result: DrainResult) -> None:
        for key, pod in pending.items():
            try:
                self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
                result.deleted.append(key)
            except ApiException as exc:
                if exc.status != 404:
                    raise _wrap(exc) from exc

    def _wait_gone(self, evicted: dict[str, Any], deadline: float) -> list[str]:
        """Wait for evicted pods to be gone (or replaced under the same name); returns those left."""
        waiting = dict(evicted)
        while waiting and self._clock() < deadline:
            for key, pod in list(waiting.items()):
                try:
                    current = self.core.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace)
                    if current.metadata.uid != pod.metadata.uid:
                        waiting.pop(key)  # a new pod with the same name (StatefulSet)
                except ApiException as exc:
                    if exc.status != 404:
                        raise _wrap(exc) from exc
                    waiting.pop(key)
            if waiting:
                self._sleep(0.2)
        return list(waiting)

    def drain(self, name: str, *, timeout: float, force_after: float, grace_period: int | None,
              incident: str, only: set[str] | None = None) -> DrainResult:
        """Evict every pod but DaemonSet and mirror pods (or `only` these); retry 429s with backoff until
        `timeout`; wait for the pods to be gone. Force-delete after `force_after` seconds only if set (> 0)."""
        node = self._node(name)
        self.event(node, "VigilDrain", f"Draining {'all pods' if only is None else f'{len(only)} pods'} "
                                       f"for incident {incident}")
        result = DrainResult()
        pending = self._drain_candidates(name, result, only)
        start = self._clock()
        deadline = start + timeout
        evicted = self._evict_until(pending, deadline, grace_period, result)
        result.evicted = sorted(evicted)
        if pending and force_after > 0 and self._clock() - start >= force_after:
            self._force_delete(pending, result)
            pending = {}
        waiting = self._wait_gone(evicted, max(deadline, self._clock() + 5))
        result.remaining = sorted([*pending, *waiting])
        if result.blocked_by and result.remaining:
            pdbs = sorted(set(result.blocked_by.values()))
            self.event(node, "VigilDrainBlocked", f"Drain blocked by PodDisruptionBudget {', '.join(pdbs)}",
                       type_="Warning")
        return result

    # ---- events ------------------------------------------------------------------------------

    def event(self, obj: Any, reason: str, message: str, type_: str = "Normal") -> None:
        """A Kubernetes Event on the object, so `kubectl describe` shows what Vigil did."""
        now = dt.datetime.now(dt.UTC)
        namespace = obj.metadata.namespace or self.event_namespace
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{obj.metadata.name}.vigil.{uuid.uuid4().hex[:10]}",
                                         namespace=namespace),
            involved_object=client.V1ObjectReference(kind=obj.kind or "Node", name=obj.metadata.name,
                                                     namespace=obj.metadata.namespace, uid=obj.metadata.uid,
                                                     api_version=obj.api_version or "v1"),
            reason=reason, message=message[:1024], type=type_, source=client.V1EventSource(component=COMPONENT),
            first_timestamp=now, last_timestamp=now, count=1, reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
        )
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as exc:  # an Event is a courtesy; the audit record is the record
            log.warning("could not record event %s on %s: %s", reason, obj.metadata.name, exc.reason)

