"""Jobs pinned to one node (GPU reset, reboot, validation): built from a JobSpec, created once per
incident and step (a deterministic name: a retry or a restart finds the same Job), waited on
with a deadline, garbage-collected by ttlSecondsAfterFinished.

The command is a jinja2 template over node, uuid and gpu. Those come from alert labels, so they
are checked against the shapes Kubernetes and NVML give them and shell-quoted before rendering."""

from __future__ import annotations

import hashlib
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

from remediator.cluster.kube import Kube, KubeError, _wrap
from remediator.domain.policy import compile_template
from remediator.domain.repair import JobSpec

_NODE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]{1,80}$")
_GPU = re.compile(r"^[0-9]{1,3}$")
MANAGED_BY = {"app.kubernetes.io/managed-by": "vigil"}


def check_target(node: str, uuid: str = "", gpu: str = "") -> None:
    """ValueError unless the values have the shapes of a node name, a GPU UUID and an index."""
    if not _NODE.match(node or ""):
        raise ValueError(f"node {node!r} is not a Kubernetes node name")
    if uuid and not _UUID.match(uuid):
        raise ValueError(f"uuid {uuid!r} is not an NVML GPU or MIG UUID")
    if gpu and not _GPU.match(str(gpu)):
        raise ValueError(f"gpu {gpu!r} is not a GPU index")


def render_command(template: str, *, node: str, uuid: str = "", gpu: str = "") -> str:
    check_target(node, uuid, gpu)
    compiled = compile_template(template, "command")
    values = {"node": shlex.quote(node), "uuid": shlex.quote(uuid), "gpu": shlex.quote(str(gpu))}
    return compiled if isinstance(compiled, str) else compiled.render(values)


def job_name(kind: str, incident: str, node: str, extra: str = "") -> str:
    digest = hashlib.sha256(f"{node}/{extra}".encode()).hexdigest()[:10]
    return f"vigil-{kind}-{incident}-{digest}"[:63].rstrip("-")


@dataclass(frozen=True)
class JobResult:
    name: str
    state: str  # succeeded | failed | timeout
    detail: str


def _tolerations(node, prefixes: tuple[str, ...]) -> list[dict]:
    """Tolerate Vigil's own taints on this node (and a cordon's), nothing else."""
    out = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    for t in node.spec.taints or []:
        if t.key.startswith(prefixes):
            out.append({"key": t.key, "operator": "Exists", "effect": t.effect})
    return out


def build_job(spec: JobSpec, *, name: str, namespace: str, node, command: str, ttl: int, labels: dict[str, str],
              prefixes: tuple[str, ...], service_account: str = "", annotations: dict[str, str] | None = None) -> dict:
    container = {"name": "repair", "image": spec.image, "command": ["/bin/sh", "-c", command],
                 "securityContext": {"privileged": spec.privileged}}
    pod = {"nodeName": node.metadata.name, "restartPolicy": "Never", "tolerations": _tolerations(node, prefixes),
           "automountServiceAccountToken": bool(service_account), "containers": [container],
           "terminationGracePeriodSeconds": 10}
    if service_account:
        pod["serviceAccountName"] = service_account
    if spec.host_pid:
        pod["hostPID"] = True
    if spec.runtime_class:
        pod["runtimeClassName"] = spec.runtime_class
    if spec.host_root:
        pod["volumes"] = [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}]
        container["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
    meta = {"name": name, "namespace": namespace, "labels": {**MANAGED_BY, **labels},
            "annotations": {"vigil.io/node": node.metadata.name, **(annotations or {})}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": max(int(spec.timeout), 1),
                     "ttlSecondsAfterFinished": ttl,
                     "template": {"metadata": {"labels": {**MANAGED_BY, **labels}}, "spec": pod}}}


class NodeJobs:
    def __init__(self, kube: Kube, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.kube = kube
        self.batch = client.BatchV1Api(kube.api)
        self._clock, self._sleep = clock, sleep

    def ensure(self, body: dict) -> bool:
        """Create the Job unless it exists (the same incident's step after a retry); True if created."""
        meta = body["metadata"]
        try:
            self.kube.call(self.batch.create_namespaced_job, meta["namespace"], body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise _wrap(exc) from exc

    def annotations(self, name: str, namespace: str) -> dict[str, str] | None:
        """The Job's annotations, or None if there is no such Job."""
        try:
            return dict(self.kube.call(self.batch.read_namespaced_job, name, namespace).metadata.annotations or {})
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _wrap(exc) from exc

    def status(self, name: str, namespace: str) -> str | None:
        """succeeded | failed | None (still running)."""
        try:
            job = self.kube.call(self.batch.read_namespaced_job_status, name, namespace)
        except ApiException as exc:
            if exc.status == 404:  # collected by the TTL controller: it finished before
                raise KubeError(404, f"Job {namespace}/{name} is gone (collected before it was seen finishing)")\
                    from exc
            raise _wrap(exc) from exc
        for c in job.status.conditions or []:
            if c.status == "True" and c.type in ("Complete", "SuccessCriteriaMet"):
                return "succeeded"
            if c.status == "True" and c.type in ("Failed", "FailureTarget"):
                return f"failed: {c.reason or ''} {c.message or ''}".strip()
        return None

    def wait(self, name: str, namespace: str, timeout: float) -> JobResult:
        deadline = self._clock() + timeout
        delay = 0.2
        while True:
            state = self.status(name, namespace)
            if state == "succeeded":
                return JobResult(name, "succeeded", f"Job {namespace}/{name} completed")
            if state is not None:
                return JobResult(name, "failed", f"Job {namespace}/{name} {state}")
            if self._clock() >= deadline:
                return JobResult(name, "timeout", f"Job {namespace}/{name} did not finish in {timeout:.0f} s")
            self._sleep(min(delay, max(deadline - self._clock(), 0.01)))
            delay = min(delay * 2, 5.0)
