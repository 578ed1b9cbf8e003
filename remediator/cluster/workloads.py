"""Workload and traffic actions through the official client (the node actions are in kube.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from json import dumps as json_dumps
from json import loads as json_loads
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from remediator.cluster.kube import Kube, Refused, _wrap


def _workload_of(pod: Any) -> str:
    """The pod's controlling workload as "Kind/namespace/name" ("" for a bare pod). A ReplicaSet
    of a Deployment is named <deployment>-<pod-template-hash>."""
    ns = pod.metadata.namespace
    for o in pod.metadata.owner_references or []:
        if not o.controller:
            continue
        if o.kind == "ReplicaSet":
            h = (pod.metadata.labels or {}).get("pod-template-hash")
            if h and o.name.endswith(f"-{h}"):
                return f"Deployment/{ns}/{o.name.removesuffix('-' + h)}"
        return f"{o.kind}/{ns}/{o.name}"
    return ""


# Multi-node jobs whose pods are spread over several controllers: the label that names the whole job.
JOB_LABELS = (("jobset.sigs.k8s.io/jobset-name", "JobSet"), ("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"))


def job_of(labels: dict[str, str], namespace: str, workload: str) -> str:
    """The job a pod belongs to, for telling which multi-node job spans a domain: its JobSet or
    LeaderWorkerSet by their labels, else its controller (a Kubeflow PyTorchJob, a Job, a StatefulSet)."""
    for label, kind in JOB_LABELS:
        if labels.get(label):
            return f"{kind}/{namespace}/{labels[label]}"
    return workload


def workload_of_raw(meta: dict) -> str:
    """As `_workload_of`, from a pod's metadata as plain JSON (the watch cache)."""
    ns = meta.get("namespace", "")
    for o in meta.get("ownerReferences") or []:
        if not o.get("controller"):
            continue
        if o.get("kind") == "ReplicaSet":
            h = (meta.get("labels") or {}).get("pod-template-hash")
            if h and o["name"].endswith(f"-{h}"):
                return f"Deployment/{ns}/{o['name'].removesuffix('-' + h)}"
        return f"{o.get('kind')}/{ns}/{o.get('name')}"
    return ""


class ServiceActions:
    """Workload and traffic actions through the official client. Each records an Event and is
    idempotent per incident (an annotation or the recorded original state marks what was done)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.apps = client.AppsV1Api(kube.api)
        self.objects = client.CustomObjectsApi(kube.api)

    def _call(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        try:
            return self.kube.call(fn, *args, **kw)
        except ApiException as exc:
            raise _wrap(exc) from exc

    def restart_pod(self, ns: str, name: str, *, allow_bare: bool, grace: int | None, force: bool,
                    incident: str) -> dict:
        """Through the Eviction API, so PodDisruptionBudgets hold; a 429 is reported with the PDB that
        refused it. Deleted directly only when the rule opts in with force_delete."""
        try:
            pod = self.kube.call(self.kube.core.read_namespaced_pod, name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return {"detail": "already gone"}
            raise _wrap(exc) from exc
        if not _workload_of(pod) and not allow_bare:
            raise Refused(f"pod {ns}/{name} has no controller; refusing to delete a bare pod")
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name,
                                                                                            "namespace": ns}}
        if grace is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace}
        try:
            self.kube.call(self.kube.core.create_namespaced_pod_eviction, name, ns, body)
        except ApiException as exc:
            if exc.status == 404:
                return {"detail": "already gone"}
            if exc.status != 429:
                raise _wrap(exc) from exc
            pdb = self.kube.blocking_pdb(pod)
            if not force:
                return {"detail": f"eviction refused by PodDisruptionBudget {pdb}", "blocked_by": pdb}
            self._call(self.kube.core.delete_namespaced_pod, name, ns,
                       **({} if grace is None else {"grace_period_seconds": grace}))
            self.kube.event(pod, "VigilRestartPod", f"Force-deleted by Vigil for incident {incident} past "
                            f"PodDisruptionBudget {pdb} (force_delete)", type_="Warning")
            return {"detail": f"force-deleted past PodDisruptionBudget {pdb}", "forced": True}
        self.kube.event(pod, "VigilRestartPod", f"Evicted by Vigil for incident {incident}; its controller "
                                                "replaces it")
        return {"detail": "evicted; the controller replaces it"}

    def current(self, kind: str, ns: str, name: str, annotation: str) -> tuple[str, Any]:
        """Vigil's marker annotation ("" when absent) and what an owner check compares: an HTTPRoute's
        rules, a Service's selector."""
        if kind == "httproute":
            obj = self._route(ns, name)
            return (obj["metadata"].get("annotations") or {}).get(annotation, ""), obj["spec"].get("rules") or []
        svc = self._call(self.kube.core.read_namespaced_service, name, ns)
        return (svc.metadata.annotations or {}).get(annotation, ""), dict(svc.spec.selector or {})

    def _read_workload(self, kind: str, ns: str, name: str) -> Any:
        reader = {"Deployment": self.apps.read_namespaced_deployment, "StatefulSet":
                  self.apps.read_namespaced_stateful_set, "DaemonSet": self.apps.read_namespaced_daemon_set}.get(kind)
        if reader is None:
            raise Refused(f"kind must be Deployment, StatefulSet or DaemonSet, not {kind!r}", 400)
        return self._call(reader, name, ns)

    def rollout_restart(self, kind: str, ns: str, name: str, incident: str) -> str:
        obj = self._read_workload(kind, ns, name)
        annotations = obj.spec.template.metadata.annotations or {}
        if annotations.get("vigil.io/restarted-for") == incident:
            return "already restarted for this incident"
        patch = {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": dt.datetime.now(dt.UTC).isoformat(),
            "vigil.io/restarted-for": incident}}}}}
        patcher = {"Deployment": self.apps.patch_namespaced_deployment, "StatefulSet":
                   self.apps.patch_namespaced_stateful_set, "DaemonSet": self.apps.patch_namespaced_daemon_set}[kind]
        self._call(patcher, name, ns, patch)
        self.kube.event(obj, "VigilRolloutRestart", f"Rollout restart by Vigil for incident {incident}")
        return "rollout restarted"

    def rollback_deployment(self, ns: str, name: str, incident: str) -> str:
        """As `kubectl rollout undo`: the previous ReplicaSet revision's pod template."""
        dep = self._call(self.apps.read_namespaced_deployment, name, ns)
        if (dep.metadata.annotations or {}).get("vigil.io/rolled-back-for") == incident:
            return "already rolled back for this incident"
        selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
        sets = self._call(self.apps.list_namespaced_replica_set, ns, label_selector=selector).items
        owned = [rs for rs in sets if any(o.uid == dep.metadata.uid for o in rs.metadata.owner_references or [])]
        revs = sorted(owned, key=lambda rs: int((rs.metadata.annotations or {}).get(
            "deployment.kubernetes.io/revision", "0")), reverse=True)
        if len(revs) < 2:
            raise Refused(f"deployment {ns}/{name} has no previous revision to roll back to")
        previous = revs[1]
        template = self.kube.api.sanitize_for_serialization(previous.spec.template)
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        self._call(self.apps.patch_namespaced_deployment, name, ns,
                   {"metadata": {"annotations": {"vigil.io/rolled-back-for": incident}},
                    "spec": {"template": template}})
        rev = (previous.metadata.annotations or {}).get("deployment.kubernetes.io/revision")
        self.kube.event(dep, "VigilRollback", f"Rolled back to revision {rev} by Vigil for incident {incident}")
        return f"rolled back to revision {rev}"

    def scale_deployment(self, ns: str, name: str, *, replicas: int | None, step: int | None, low: int, high: int,
                         incident: str) -> dict:
        dep = self._call(self.apps.read_namespaced_deployment, name, ns)
        done = (dep.metadata.annotations or {}).get("vigil.io/scaled-for", "")
        current = dep.spec.replicas or 0
        if done.startswith(f"{incident}:"):
            return {"detail": "already scaled for this incident", "replicas": current}
        target = replicas if replicas is not None else current + (step or 0)
        target = max(low, min(high, target))
        self._call(self.apps.patch_namespaced_deployment, name, ns,
                   {"metadata": {"annotations": {"vigil.io/scaled-for": f"{incident}:{current}"}},
                    "spec": {"replicas": target}})
        self.kube.event(dep, "VigilScale", f"Scaled {current} -> {target} by Vigil for incident {incident}")
        return {"detail": f"scaled {current} -> {target}", "replicas": target, "previous": current}

    def quarantine_pod(self, ns: str, name: str, label: str, value: str, incident: str) -> dict:
        pod = self._call(self.kube.core.read_namespaced_pod, name, ns)
        labels = pod.metadata.labels or {}
        if (pod.metadata.annotations or {}).get("vigil.io/quarantined-for") == incident:
            return {"detail": "already quarantined for this incident"}
        old = labels.get(label)
        self._call(self.kube.core.patch_namespaced_pod, name, ns, {"metadata": {
            "labels": {label: value}, "annotations": {"vigil.io/quarantined-for": incident,
                                                      "vigil.io/quarantined-from": f"{label}={old or ''}"}}})
        self.kube.event(pod, "VigilQuarantine", f"Label {label}={value} by Vigil for incident {incident}: out of the "
                        f"Service's endpoints, kept for debugging (undo: {label}={old})")
        return {"detail": f"{label}: {old} -> {value}; kept for debugging",
                "undo": f"kubectl -n {ns} label pod {name} {label}={old} --overwrite"}

    def _route(self, ns: str, name: str) -> dict:
        return self._call(self.objects.get_namespaced_custom_object, "gateway.networking.k8s.io", "v1", ns,
                          "httproutes", name)

    def shift_traffic(self, ns: str, route: str, src: str, dst: str, step: float, rule_index: int,
                      incident: str) -> dict:
        obj = self._route(ns, route)
        rules = obj["spec"].get("rules") or []
        if rule_index >= len(rules):
            raise Refused(f"HTTPRoute {ns}/{route} has no rule {rule_index}", 400)
        refs = rules[rule_index].get("backendRefs") or []
        by = {r["name"]: r for r in refs}
        if src not in by or dst not in by:
            raise Refused(f"HTTPRoute {ns}/{route} rule {rule_index} lacks backend {src!r} or {dst!r}", 400)
        original = {r["name"]: r.get("weight", 1) for r in refs}
        marker = (obj["metadata"].get("annotations") or {}).get("vigil.io/shifted-for", "")
        if marker.startswith(f"{incident}:"):
            return {"detail": "already shifted for this incident", "original": json_loads(marker.split(":", 1)[1]),
                    "rule_index": rule_index, "weights": {r["name"]: r.get("weight", 1) for r in refs}}
        moved = min(step, by[src].get("weight", 1))
        by[src]["weight"] = by[src].get("weight", 1) - moved
        by[dst]["weight"] = by[dst].get("weight", 1) + moved
        rules[rule_index]["backendRefs"] = refs
        self._call(self.objects.patch_namespaced_custom_object, "gateway.networking.k8s.io", "v1", ns, "httproutes",
                   route, {"metadata": {"annotations": {"vigil.io/shifted-for": f"{incident}:{json_dumps(original)}"},
                                        "resourceVersion": obj["metadata"]["resourceVersion"]},
                           "spec": {"rules": rules}})
        return {"detail": f"moved weight {moved:g} from {src} to {dst}", "original": original,
                "rule_index": rule_index, "weights": {r["name"]: r.get("weight", 1) for r in refs}}

    def restore_route(self, ns: str, route: str, original: dict, rule_index: int, incident: str) -> str:
        obj = self._route(ns, route)
        rules = obj["spec"].get("rules") or []
        for r in rules[rule_index].get("backendRefs") or []:
            if r["name"] in original:
                r["weight"] = original[r["name"]]
        self._call(self.objects.patch_namespaced_custom_object, "gateway.networking.k8s.io", "v1", ns, "httproutes",
                   route, {"metadata": {"annotations": {"vigil.io/shifted-for": None}}, "spec": {"rules": rules}})
        return f"weights restored to {original}"

    def failover_service(self, ns: str, name: str, selector: dict, incident: str) -> dict:
        svc = self._call(self.kube.core.read_namespaced_service, name, ns)
        current = dict(svc.spec.selector or {})
        marker = (svc.metadata.annotations or {}).get("vigil.io/failed-over-for", "")
        if marker.startswith(f"{incident}:"):
            return {"detail": "already failed over for this incident", "original": json_loads(marker.split(":", 1)[1])}
        svc.metadata.annotations = {**(svc.metadata.annotations or {}),
                                    "vigil.io/failed-over-for": f"{incident}:{json_dumps(current)}"}
        svc.spec.selector = dict(selector)
        self._call(self.kube.core.replace_namespaced_service, name, ns, svc)  # atomic: resourceVersion checked
        self.kube.event(svc, "VigilFailover", f"Selector {current} -> {selector} by Vigil for incident {incident}")
        return {"detail": f"selector {current} -> {selector}", "original": current}

    def restore_service(self, ns: str, name: str, original: dict, incident: str) -> str:
        svc = self._call(self.kube.core.read_namespaced_service, name, ns)
        (svc.metadata.annotations or {}).pop("vigil.io/failed-over-for", None)
        svc.spec.selector = dict(original)
        self._call(self.kube.core.replace_namespaced_service, name, ns, svc)
        self.kube.event(svc, "VigilFailback", f"Selector restored to {original} by Vigil for incident {incident}")
        return f"selector restored to {original}"
