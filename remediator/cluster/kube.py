"""Everything the remediator does to Kubernetes, through the official client. The only module that
imports `kubernetes`; client errors are wrapped by status into KubeError (permanent or not)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from remediator.cluster.bounded import Bounded
from remediator.cluster.nodeview import GPU_RESOURCE, node_view
from remediator.cluster.retry import Interrupted, KubeError, Refused, Retrier, RetryPolicy, request, timeouts, wrap
from remediator.domain.models import CORDONED_BY_ANNOTATION, FIELD_MANAGER, INCIDENT_ANNOTATION

TAINTS_ANNOTATION = "vigil.io/taints"  # {"key:effect": "incident=value"}: the taints Vigil added, and for whom


def _taint_owners(node: Any) -> dict[str, str]:
    try:
        owners = json.loads((node.metadata.annotations or {}).get(TAINTS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in owners.items()} if isinstance(owners, dict) else {}

log = logging.getLogger(__name__)
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
COMPONENT = "vigil-remediator"
T = TypeVar("T")
__all__ = ["GPU_RESOURCE", "DrainResult", "Interrupted", "Kube", "KubeError", "Refused", "RetryPolicy"]
_wrap = wrap  # the name workloads.py imports
MAX_CALLS = 64  # given-up requests whose threads still wait on a trickle: beyond, requests fail at once


EVENT_INCIDENT = "vigil.io/incident"  # the Event's annotation: "<ledger uid>/<incident id>"


def _event_name(obj_name: str, reason: str, incident: str, scope: str = "") -> str:
    """One Event per (object, reason, ledger, incident): a resumed action re-creating it gets 409,
    not a twin. `scope` is the ledger's uid: a new ledger's incident ids start at 1 again, and its
    Events must not take an older ledger's as their own."""
    tail = re.sub(r"[^a-z0-9-]", "-", f"vigil-{scope[:12]}-{incident}-{reason}".lower().replace("--", "-"))
    return f"{obj_name[:170]}.{tail[:80]}"


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


def _read(answer: urllib3.HTTPResponse) -> bytes:
    """A raw urllib3 response (`_preload_content=False`): its body, the connection released."""
    try:
        return answer.data
    finally:
        answer.release_conn()


class Kube:
    def __init__(self, kubeconfig: str | None = None, *, event_namespace: str = "default", node_selector: str = "",
                 api_client: Any = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None, retry: RetryPolicy | None = None,
                 stopping: threading.Event | None = None) -> None:
        """`sleep` (tests): pauses inside a drain; by default the retrier's, which a stop interrupts."""
        if api_client is None:
            cfg = client.Configuration()
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            else:
                config.load_incluster_config(client_configuration=cfg)
            cfg.retries = 0  # urllib3's own retries would stretch a request past its timeout; Retrier retries
            api_client = client.ApiClient(cfg)
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.event_namespace = event_namespace
        self.event_scope = ""  # the ledger's uid, in Event names (ha.open_ledger sets it)
        self.node_selector = node_selector
        self.retrier = Retrier(retry or RetryPolicy(), stopping=stopping, clock=clock)
        self._clock = clock
        self._sleep = sleep or self.retrier.sleep
        t = self.retrier.policy.request_timeout
        self.timeout = timeouts(t)
        self.requests = 0  # API requests made through `call` (counted for tests and benchmarks)
        self._bounded = Bounded(MAX_CALLS, "the Kubernetes API")

    def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """One API request (no retry: see `attempt`). The client's timeout bounds the connect and
        each socket read; an answer that trickles in a byte at a time is given up after twice the
        request timeout, as a transient error (the retried step reads back what applied)."""
        self.requests += 1
        return request(self._bounded, fn, *args, seconds=self.timeout[0], read=self.timeout[1], **kw)

    def page(self, fn: Callable[..., Any], **kw: Any) -> bytes:
        """One page of a LIST as its body's bytes (not deserialised into models). A page of 500 nodes
        takes longer than one object: three times the read timeout, four times in all."""
        self.requests += 1
        return request(self._bounded, lambda **k: _read(fn(_preload_content=False, **k)), seconds=self.timeout[0],
                       read=3 * self.timeout[1], total=4 * self.timeout[1], **kw)

    def attempt(self, what: str, step: Callable[[], T], deadline: float | None = None) -> T:
        """Run an idempotent step (read, decide, write) with retries until `deadline` seconds pass."""
        with self.retrier.deadline(deadline):
            return self.retrier.run(step, what)

    # ---- reads ---------------------------------------------------------------------------

    def ping(self) -> None:
        """For /readyz: fails within 6 s, also when a trickle holds every slot of `call` (then it
        fails at once, which is what readiness should say)."""
        try:
            request(self._bounded, client.VersionApi(self.api).get_code, seconds=3, total=6)
        except ApiException as exc:
            raise _wrap(exc) from exc

    # ---- node actions (each an idempotent step: run again, it reads the node and sees what applied) ----

    def _node(self, name: str):
        return self.call(self.core.read_node, name)

    def _patch_node(self, name: str, body: dict) -> None:
        self.call(self.core.patch_node, name, body, field_manager=FIELD_MANAGER)

    def cordon(self, name: str, incident: str) -> str:
        """Cordon under Vigil's field manager, so managedFields says who owns the cordon."""
        node = self._node(name)
        if node.spec.unschedulable:
            if (node.metadata.annotations or {}).get(INCIDENT_ANNOTATION) == incident:
                # our own cordon, applied before a lost answer or a restart: finish it (the Event)
                self.event(node, "VigilCordon", f"Cordoned by Vigil for incident {incident}", incident=incident)
                return "cordoned"
            return "already unschedulable"  # someone else did it: not ours to mark
        self._patch_node(name, {"spec": {"unschedulable": True},
                                "metadata": {"annotations": {CORDONED_BY_ANNOTATION: "vigil",
                                                             INCIDENT_ANNOTATION: incident}}})
        self.event(node, "VigilCordon", f"Cordoned by Vigil for incident {incident}", incident=incident)
        return "cordoned"

    def uncordon(self, name: str, incident: str, *, only_incident: bool = False) -> str:
        """Uncordon only a cordon Vigil still owns (for this incident, with only_incident)."""
        node = self._node(name)
        if not node.spec.unschedulable:
            return "already schedulable"
        owner = node_view(node, True).cordon_owner  # from managedFields
        wanted = f"vigil:{incident}" if only_incident else "vigil:"
        if not (owner == wanted if only_incident else owner.startswith(wanted)):
            raise Refused(f"node {name} was not cordoned by {'this incident' if only_incident else 'Vigil'} "
                          f"(spec.unschedulable is owned by {owner}); refusing to uncordon")
        spec: dict[str, Any] = {"unschedulable": None}
        annotations: dict[str, Any] = {CORDONED_BY_ANNOTATION: None, INCIDENT_ANNOTATION: None}
        dropped = self._own_taints(node, incident, spec, annotations)  # the node returns whole: its taints too
        self._patch_node(name, {"spec": spec, "metadata": {"annotations": annotations,
                                                           "resourceVersion": node.metadata.resource_version}})
        self.event(node, "VigilUncordon", f"Uncordoned by Vigil for incident {incident}", incident=incident)
        return "uncordoned" + (f"; removed its taint {', '.join(dropped)}" if dropped else "")

    def _own_taints(self, node: Any, incident: str, spec: dict, annotations: dict) -> list[str]:
        """The taints this incident added (TAINTS_ANNOTATION says whose each is), taken out of `spec`'s
        taints and of the annotation; a taint someone changed since is not Vigil's any more."""
        owned = _taint_owners(node)
        mine = {k for k, owner in owned.items() if owner.partition("=")[0] == incident}
        if not mine:
            return []
        kept, dropped = [], []
        for t in node.spec.taints or []:
            key = f"{t.key}:{t.effect}"
            if key in mine and owned[key].partition("=")[2] == (t.value or ""):
                dropped.append(key)
            else:
                kept.append(self.api.sanitize_for_serialization(t))
        spec["taints"] = kept
        rest = {k: v for k, v in owned.items() if k not in mine}
        annotations[TAINTS_ANNOTATION] = json.dumps(rest, sort_keys=True) if rest else None
        return dropped

    def taint(self, name: str, key: str, value: str, effect: str, incident: str) -> str:
        node = self._node(name)
        taints = list(node.spec.taints or [])
        if any(t.key == key and t.effect == effect and (t.value or "") == value for t in taints):
            return "already tainted"
        taints = [t for t in taints if not (t.key == key and t.effect == effect)]
        taints.append(client.V1Taint(key=key, value=value or None, effect=effect))
        owners = {**_taint_owners(node), f"{key}:{effect}": f"{incident}={value}"}  # removed when it uncordons
        body = {"spec": {"taints": [self.api.sanitize_for_serialization(t) for t in taints]},
                "metadata": {"resourceVersion": node.metadata.resource_version,
                             "annotations": {TAINTS_ANNOTATION: json.dumps(owners, sort_keys=True)}}}
        self._patch_node(name, body)  # resourceVersion: a concurrent change makes this 409 (retried from the read)
        self.event(node, "VigilTaint", f"Tainted {key}={value}:{effect} by Vigil for incident {incident}",
                   incident=incident)
        return "tainted"

    def untaint(self, name: str, key: str, effect: str, incident: str) -> str:
        """Remove the taint with this key and effect (Vigil's own keys only: callers name them)."""
        node = self._node(name)
        taints = list(node.spec.taints or [])
        keep = [t for t in taints if not (t.key == key and t.effect == effect)]
        if len(keep) == len(taints):
            return "not tainted"
        body = {"spec": {"taints": [self.api.sanitize_for_serialization(t) for t in keep]},
                "metadata": {"resourceVersion": node.metadata.resource_version}}
        self._patch_node(name, body)
        self.event(node, "VigilUntaint", f"Removed taint {key}:{effect} by Vigil for incident {incident}",
                   incident=incident)
        return "untainted"

    def _pods_on(self, node: str) -> list:
        return self.call(self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}").items

    def blocking_pdb(self, pod) -> str:
        try:
            pdbs = self.call(self.policy.list_namespaced_pod_disruption_budget, pod.metadata.namespace).items
        except (ApiException, OSError):
            return "unknown"
        labels = pod.metadata.labels or {}
        for pdb in pdbs:
            sel = pdb.spec.selector
            if sel and sel.match_labels and all(labels.get(k) == v for k, v in sel.match_labels.items()):
                return f"{pod.metadata.namespace}/{pdb.metadata.name}"
        return "unknown"

    def drain(self, name: str, *, timeout: float, force_after: float, grace_period: int | None,
              incident: str, only: set[str] | None = None) -> DrainResult:
        """Evict every pod but DaemonSet and mirror pods (or `only` these "namespace/name", e.g. the
        pods holding one faulty GPU); retry 429s with backoff until `timeout`;
        wait for the pods to be gone. Force-delete after `force_after` seconds only if set (> 0).
        Run again (a retry, a resume after a restart), it picks up what is left on the node."""
        node = self._node(name)
        self.event(node, "VigilDrain", f"Draining for incident {incident}", incident=incident)
        result = DrainResult()
        pending = self._evictable(name, result, only)
        start = self._clock()
        deadline = start + timeout
        evicted = self._evict(pending, result, grace_period, deadline)
        if pending and force_after > 0 and self._clock() - start >= force_after:
            self._force_delete(pending, result)
            pending = {}
        waiting = self._wait_gone(evicted, max(deadline, self._clock() + 5))
        result.evicted = sorted(evicted)
        result.remaining = sorted([*pending, *waiting])
        if result.blocked_by and result.remaining:
            pdbs = sorted(set(result.blocked_by.values()))
            self.event(node, "VigilDrainBlocked", f"Drain blocked by PodDisruptionBudget {', '.join(pdbs)}",
                       type_="Warning", incident=incident)
        return result

    def _evictable(self, name: str, result: DrainResult, only: set[str] | None = None) -> dict[str, Any]:
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

    def _evict_one(self, pod: Any, grace_period: int | None) -> str:
        """evicted | blocked (429: a PodDisruptionBudget) | retry (a transient error; try next round)."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace}}
        if grace_period is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
        try:
            self.call(self.core.create_namespaced_pod_eviction, pod.metadata.name, pod.metadata.namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                return "evicted"  # already gone
            if exc.status == 429:
                return "blocked"
            if wrap(exc).permanent:
                raise wrap(exc) from exc
            return "retry"
        except OSError:  # reset, timed out: the next round reads the answer from the cluster
            return "retry"
        return "evicted"

    def _evict(self, pending: dict[str, Any], result: DrainResult, grace_period: int | None,
               deadline: float) -> dict[str, Any]:
        delay = 1.0
        evicted: dict[str, Any] = {}
        while pending and self._clock() < deadline:
            for key, pod in list(pending.items()):
                outcome = self._evict_one(pod, grace_period)
                if outcome == "blocked":
                    result.blocked_by[key] = self.blocking_pdb(pod)
                elif outcome == "evicted":
                    result.blocked_by.pop(key, None)
                    evicted[key] = pending.pop(key)
            if pending:
                self._sleep(min(delay, max(deadline - self._clock(), 0)))
                delay = min(delay * 2, 10.0)
        return evicted

    def _force_delete(self, pending: dict[str, Any], result: DrainResult) -> None:
        for key, pod in pending.items():
            try:
                self.call(self.core.delete_namespaced_pod, pod.metadata.name, pod.metadata.namespace,
                          grace_period_seconds=0)
                result.deleted.append(key)
            except ApiException as exc:
                if exc.status != 404:
                    raise wrap(exc) from exc

    def _gone(self, pod: Any) -> bool:
        try:
            current = self.call(self.core.read_namespaced_pod, pod.metadata.name, pod.metadata.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            if wrap(exc).permanent:
                raise wrap(exc) from exc
            return False
        except OSError:
            return False
        return current.metadata.uid != pod.metadata.uid  # a new pod with the same name (StatefulSet)

    def _wait_gone(self, evicted: dict[str, Any], deadline: float) -> list[str]:
        waiting = dict(evicted)
        while waiting and self._clock() < deadline:
            for key, pod in list(waiting.items()):
                if self._gone(pod):
                    waiting.pop(key)
            if waiting:
                self._sleep(0.2)
        return list(waiting)

    # ---- events ------------------------------------------------------------------------------

    def _event_exists(self, namespace: str, body: Any, owner: str) -> None:
        """After a 409: the Event there is ours (an earlier attempt, or before a restart) only if it
        names the same incident of the same ledger; anyone else's gets ours beside it, renamed."""
        try:
            there = self.call(self.core.read_namespaced_event, body.metadata.name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            there = None  # deleted meanwhile: write ours under a name of its own
        if there is not None and ((there.metadata.annotations or {}).get(EVENT_INCIDENT) == owner):
            return
        body.metadata.name = f"{body.metadata.name[:230]}.{uuid.uuid4().hex[:10]}"
        self.call(self.core.create_namespaced_event, namespace, body)

    def event(self, obj: Any, reason: str, message: str, type_: str = "Normal", *, incident: str | None = None) -> None:
        """A Kubernetes Event on the object, so `kubectl describe` shows what Vigil did. With an
        incident, its name is fixed: writing it again (a retry, a resume) finds it there (409)."""
        now = dt.datetime.now(dt.UTC)
        namespace = obj.metadata.namespace or self.event_namespace
        name = _event_name(obj.metadata.name, reason, incident, self.event_scope) if incident else \
            f"{obj.metadata.name}.vigil.{uuid.uuid4().hex[:10]}"
        owner = f"{self.event_scope}/{incident}" if incident else ""
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace,
                                         annotations={EVENT_INCIDENT: owner} if owner else None),
            involved_object=client.V1ObjectReference(kind=obj.kind or "Node", name=obj.metadata.name,
                                                     namespace=obj.metadata.namespace, uid=obj.metadata.uid,
                                                     api_version=obj.api_version or "v1"),
            reason=reason, message=message[:1024], type=type_, source=client.V1EventSource(component=COMPONENT),
            first_timestamp=now, last_timestamp=now, count=1, reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
        )

        def create() -> None:
            try:
                self.call(self.core.create_namespaced_event, namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                self._event_exists(namespace, body, owner)

        try:  # retried like any step of the action: a lost Event is lost for good (`kubectl describe`)
            self.attempt(f"event {reason}", create)
        except KubeError as exc:  # an Event is a courtesy; the audit record is the record
            log.warning("could not record event %s on %s: %s", reason, obj.metadata.name, exc)
