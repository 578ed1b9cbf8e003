"""Read the ClusterView the rails need with LIST calls: nodes (managed or not, Ready, taints, who
owns the cordon), paused namespaces, pods with their workload and readiness, workloads' desired
replicas, and each Service's ready endpoints. A watch-fed cache may replace this filler; it must
produce the same ClusterView (remediator.domain.models)."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.rest import ApiException

from remediator.cluster.kube import Kube, _wrap
from remediator.cluster.nodeview import condition, node_view
from remediator.cluster.workloads import _workload_of, job_of
from remediator.domain.models import PAUSE_ANNOTATION, ClusterView, NodeView, PodView, WorkloadView

TIMEOUT = 10


def _nodes(kube: Kube) -> dict[str, NodeView]:
    every = kube.core.list_node(_request_timeout=TIMEOUT).items
    if kube.node_selector:
        managed = {n.metadata.name for n in kube.core.list_node(label_selector=kube.node_selector,
                                                                 _request_timeout=TIMEOUT).items}
    else:
        managed = {n.metadata.name for n in every}
    return {n.metadata.name: node_view(n, n.metadata.name in managed) for n in every}


def _selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pods(kube: Kube) -> tuple[dict[str, PodView], dict[str, frozenset[str]]]:
    pods = [p for p in kube.core.list_pod_for_all_namespaces(_request_timeout=TIMEOUT).items
            if not p.metadata.deletion_timestamp]
    services = kube.core.list_service_for_all_namespaces(_request_timeout=TIMEOUT).items
    by_ns: dict[str, list] = {}
    for s in services:
        if s.spec.selector:
            by_ns.setdefault(s.metadata.namespace, []).append(s)
    view, endpoints = {}, {f"{s.metadata.namespace}/{s.metadata.name}": set() for s in services if s.spec.selector}
    for p in pods:
        key = f"{p.metadata.namespace}/{p.metadata.name}"
        labels = p.metadata.labels or {}
        svcs = tuple(f"{s.metadata.namespace}/{s.metadata.name}" for s in by_ns.get(p.metadata.namespace, [])
                     if _selects(s.spec.selector, labels))
        ready = p.status is not None and p.status.phase == "Running" and condition(p, "Ready")
        workload = _workload_of(p)
        view[key] = PodView(workload, ready, p.spec.node_name or "", svcs,
                            job=job_of(labels, p.metadata.namespace, workload))
        for s in svcs if ready else ():
            endpoints[s].add(key)
    return view, {k: frozenset(v) for k, v in endpoints.items()}


def _workloads(kube: Kube, pods: dict[str, PodView]) -> dict[str, WorkloadView]:
    apps = client.AppsV1Api(kube.api)
    desired = {}
    for kind, lister in (("Deployment", apps.list_deployment_for_all_namespaces),
                         ("StatefulSet", apps.list_stateful_set_for_all_namespaces)):
        for w in lister(_request_timeout=TIMEOUT).items:
            desired[f"{kind}/{w.metadata.namespace}/{w.metadata.name}"] = w.spec.replicas or 0
    ready: dict[str, int] = {}
    for p in pods.values():
        if p.workload and p.ready:
            ready[p.workload] = ready.get(p.workload, 0) + 1
    return {k: WorkloadView(d, ready.get(k, 0)) for k, d in desired.items()}


def read_cluster_view(kube: Kube) -> ClusterView:
    """Raises KubeError when the API server does not answer."""
    try:
        nodes = _nodes(kube)
        namespaces = kube.core.list_namespace(_request_timeout=TIMEOUT).items
        pods, endpoints = _pods(kube)
        workloads = _workloads(kube, pods)
    except ApiException as exc:
        raise _wrap(exc) from exc
    paused = frozenset(ns.metadata.name for ns in namespaces
                       if (ns.metadata.annotations or {}).get(PAUSE_ANNOTATION) == "disabled")
    return ClusterView(nodes, paused, True, pods, workloads, endpoints)
