"""Repair executors: GPU reset and node reboot through Jobs pinned to the node, validation before
return to service, the RMA mark, and which pods hold a GPU (for `drain_node` with `scope: gpu`).
Node replacement and the medik8s reboot are in providers.py.

Each is idempotent per incident (Jobs have a name derived from the incident; a second run finds
the first one's Job and waits on it), records an Event on the node, and has a deadline: a repair
that never finishes is reported as failed, never left "in progress" (NVSentinel #1808)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException

from remediator.cluster.jobs import NodeJobs, build_job, check_target, job_name, render_command
from remediator.cluster.kube import GPU_RESOURCE, MIRROR_ANNOTATION, Kube, _wrap
from remediator.cluster.outcome import Outcome
from remediator.cluster.prom import PromChecker
from remediator.domain.models import PAUSE_ANNOTATION
from remediator.domain.policy import compile_template
from remediator.domain.repair import RMA_LABEL, RMA_REASON_ANNOTATION, JobSpec, RepairSettings
from vigil_common.durations import parse_duration

BOOT_ID_ANNOTATION = "vigil.io/boot-id-before"


@dataclass
class RepairContext:
    kube: Kube
    settings: RepairSettings
    prom: PromChecker | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    # why nothing may change the cluster now (the global pause, dry-run), read afresh: a repair that
    # drains first checks it again before its Job, as the drain may have taken minutes
    held: Callable[[], str | None] = lambda: None
    jobs: NodeJobs = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = NodeJobs(self.kube, clock=self.clock, sleep=self.sleep)

    def node(self, name: str) -> Any:
        try:
            return self.kube.call(self.kube.core.read_node, name)
        except ApiException as exc:
            raise _wrap(exc) from exc

    def wait_for(self, pred: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        deadline = self.clock() + timeout
        while True:
            value = pred()
            if value or self.clock() >= deadline:
                return value
            self.sleep(min(interval, max(deadline - self.clock(), 0.01)))


def _spec(base: JobSpec, params: dict[str, Any]) -> JobSpec:
    """The configured Job, with the image, command or timeout a rule's step overrides."""
    timeout = params.get("timeout")
    return JobSpec(image=params.get("image") or base.image, command=params.get("command") or base.command,
                   timeout=parse_duration(timeout) if timeout not in (None, "") else base.timeout,
                   privileged=base.privileged, host_root=base.host_root, host_pid=base.host_pid,
                   runtime_class=base.runtime_class)


def run_node_job(ctx: RepairContext, *, kind: str, spec: JobSpec, node: str, uuid: str, gpu: str,
                 incident: str, wait: bool = True, annotations: dict[str, str] | None = None) -> Outcome:
    """Create (once) the Job for this incident's step on the node and wait for it to finish."""
    n = ctx.node(node)
    command = render_command(spec.command, node=node, uuid=uuid, gpu=gpu)
    name = job_name(kind, incident, node, uuid)
    s = ctx.settings
    body = build_job(spec, name=name, namespace=s.namespace, node=n, command=command, ttl=s.ttl_after_finished,
                     labels={"vigil.io/incident": incident, "vigil.io/repair": kind}, prefixes=s.taint_prefixes,
                     service_account=s.service_account, annotations=annotations)
    created = ctx.jobs.ensure(body)
    if created:
        ctx.kube.event(n, f"Vigil{kind.title().replace('-', '')}", f"Job {s.namespace}/{name} started for incident "
                       f"{incident}: {command}")
    data = {"job": f"{s.namespace}/{name}", "command": command}
    if not wait:
        return Outcome("succeeded", f"Job {s.namespace}/{name} {'created' if created else 'exists'}", data)
    result = ctx.jobs.wait(name, s.namespace, spec.timeout + 30)
    state = "succeeded" if result.state == "succeeded" else "failed"
    return Outcome(state, result.detail, data, reason="" if state == "succeeded" else f"job_{result.state}")


# ---- which pods hold a GPU ---------------------------------------------------------------------

def gpu_holders(ctx: RepairContext, node: str, uuid: str) -> tuple[set[str] | None, str]:
    """Pods ("namespace/name") holding GPU `uuid` on `node`, from the exporter's
    gpu_allocation_info through Prometheus; None (with the reason) when that is unknown."""
    check_target(node, uuid)
    if ctx.prom is None:
        return None, "no Prometheus configured: GPU attribution unknown"
    rows = ctx.prom.series(f'gpu_allocation_info{{node="{node}"}}')
    if rows is None:
        return None, "Prometheus did not answer: GPU attribution unknown"
    if not rows:
        return None, f"no gpu_allocation_info for node {node}: GPU attribution unknown"
    pods = {f"{r['namespace']}/{r['pod']}" for r in rows if r.get("uuid") == uuid and r.get("pod")}
    return pods, f"gpu_allocation_info: {len(pods)} pods hold {uuid} ({', '.join(sorted(pods)) or 'none'})"


def _gpu_pods_on(ctx: RepairContext, node: str) -> set[str]:
    """Pods on the node that request GPUs and would be running (not DaemonSet, mirror or finished)."""
    try:
        pods = ctx.kube.call(ctx.kube.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}").items
    except ApiException as exc:
        raise _wrap(exc) from exc
    out = set()
    for p in pods:
        if p.status.phase in ("Succeeded", "Failed") or MIRROR_ANNOTATION in (p.metadata.annotations or {}):
            continue
        if any(o.kind == "DaemonSet" for o in p.metadata.owner_references or []):
            continue
        if any(GPU_RESOURCE in ((c.resources and c.resources.limits) or {}) for c in p.spec.containers):
            out.add(f"{p.metadata.namespace}/{p.metadata.name}")
    return out


def _existing(ctx: RepairContext, pods: set[str]) -> set[str]:
    left = set()
    for key in pods:
        ns, name = key.split("/", 1)
        try:
            ctx.kube.call(ctx.kube.core.read_namespaced_pod, name, ns)
            left.add(key)
        except ApiException as exc:
            if exc.status != 404:
                raise _wrap(exc) from exc
    return left


def _gpu_free(ctx: RepairContext, node: str, uuid: str) -> tuple[set[str], str]:
    """Wait (bounded) until no pod holds the GPU; returns what is left and how it was judged."""
    holders, why = gpu_holders(ctx, node, uuid)
    if holders is None:
        why += "; waiting for every GPU pod on the node to be gone"
        left = ctx.wait_for(lambda: not _gpu_pods_on(ctx, node), ctx.settings.pods_gone_timeout)
        return (set() if left else _gpu_pods_on(ctx, node)), why
    done = ctx.wait_for(lambda: not _existing(ctx, holders), ctx.settings.pods_gone_timeout)
    return (set(), f"{why}; all gone") if done else (_existing(ctx, holders), why)


# ---- keeping new pods off a GPU until its reset ends ------------------------------------------------

_TAINT_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def hold_key(uuid: str) -> str | None:
    """The taint naming a GPU that waits for its reset (`vigil.io/reset-<uuid>`); None when the UUID
    cannot name one. Kubernetes cannot keep pods off one GPU of a node: the taint keeps new pods
    off the node, so the device plugin cannot hand the faulty GPU to a new pod."""
    name = f"reset-{uuid}"
    return f"vigil.io/{name}" if uuid and _TAINT_NAME.match(name) else None


def hold_gpu(kube: Kube, node: str, uuid: str, incident: str) -> str:
    """Before a GPU-scoped drain: the node taint naming the GPU, or a cordon when no GPU can be
    named; what was done, for the action's result."""
    key = hold_key(uuid)
    if key is None:
        return f"no GPU to name in a taint: cordon {kube.cordon(node, incident)} instead"
    state = kube.taint(node, key, incident if _TAINT_NAME.match(incident) else "", "NoSchedule", incident)
    return f"taint {key}:NoSchedule {state}: new pods stay off the node until the GPU's reset ends"


def release_gpu(kube: Kube, node: str, uuid: str, incident: str) -> str:
    """After the reset, whatever its outcome: remove the taint `hold_gpu` set."""
    key = hold_key(uuid)
    return f"taint {key}:NoSchedule {kube.untaint(node, key, 'NoSchedule', incident)}" if key else ""


# ---- the executors -------------------------------------------------------------------------------

def reset_gpu(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    node, uuid, gpu = params["node"], params["uuid"], str(params.get("gpu", ""))
    check_target(node, uuid, gpu)
    out = _reset(ctx, node, uuid, gpu, params, incident)
    released = release_gpu(ctx.kube, node, uuid, incident)
    return Outcome(out.state, f"{out.detail}; {released}", {**out.data, "released": released}, out.reason)


def _reset(ctx: RepairContext, node: str, uuid: str, gpu: str, params: dict[str, Any], incident: str) -> Outcome:
    left, why = _gpu_free(ctx, node, uuid)
    if left:
        return Outcome("blocked", f"pods still hold {uuid}: {', '.join(sorted(left))} ({why})",
                       {"holders": sorted(left)}, reason="gpu_in_use")
    out = run_node_job(ctx, kind="reset-gpu", spec=_spec(ctx.settings.reset_gpu, params), node=node, uuid=uuid,
                       gpu=gpu, incident=incident)
    return Outcome(out.state, f"{out.detail} ({why})", {**out.data, "attribution": why}, out.reason)


def boot_id(ctx: RepairContext, node: str) -> str:
    n = ctx.node(node)
    return (n.status.node_info.boot_id or "") if n.status and n.status.node_info else ""


def _ready(n: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))


def rebooted(ctx: RepairContext, node: str, before: str) -> bool:
    """A reboot is seen as a new bootID on a Ready node (the kubelet reports it after boot)."""
    n = ctx.node(node)
    now = (n.status.node_info.boot_id or "") if n.status and n.status.node_info else ""
    return now != before and _ready(n)


def prepare_node(ctx: RepairContext, node: str, incident: str, params: dict[str, Any]) -> Outcome | None:
    """Cordon and drain before a reboot (idempotent); an Outcome when the node is not empty."""
    ctx.kube.cordon(node, incident)
    timeout = params.get("drain_timeout")
    r = ctx.kube.drain(node, timeout=parse_duration(timeout) if timeout not in (None, "") else 300.0,
                       force_after=0.0, grace_period=None, incident=incident)
    if r.complete:  # the drain may have taken minutes: a node (or Vigil) paused meanwhile is not rebooted
        if (why := ctx.held()) is not None:
            return Outcome("blocked", f"{why} (set while {node} drained); not rebooting", reason="paused")
        annotations = ctx.node(node).metadata.annotations or {}
        if annotations.get(PAUSE_ANNOTATION) == "disabled":
            return Outcome("blocked", f"{node} was paused ({PAUSE_ANNOTATION}=disabled) while it drained; not "
                           "rebooting", reason="paused")
        return None
    pdbs = sorted(set(r.blocked_by.values()))
    return Outcome("blocked", f"{len(r.remaining)} pods still on the node; not rebooting"
                   + (f" (PodDisruptionBudget {', '.join(pdbs)})" if pdbs else ""),
                   {"remaining": r.remaining}, reason="pdb" if pdbs else "drain_timeout")


def reboot_by_job(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    node = params["node"]
    check_target(node)
    spec = _spec(ctx.settings.reboot_job, params)
    existing = ctx.jobs.annotations(job_name("reboot", incident, node, ""), ctx.settings.namespace)
    # After a restart the Job exists and the node may have rebooted already: the bootID from
    # before the reboot is the one the Job recorded when it was created.
    before = existing.get(BOOT_ID_ANNOTATION, "") if existing is not None else boot_id(ctx, node)
    out = run_node_job(ctx, kind="reboot", spec=spec, node=node, uuid="", gpu="", incident=incident, wait=False,
                       annotations={BOOT_ID_ANNOTATION: before})
    data = {**out.data, "boot_id_before": before}
    if ctx.wait_for(lambda: rebooted(ctx, node, before), spec.timeout, interval=1.0):
        return Outcome("succeeded", f"{node} rebooted (bootID {before or '-'} -> {boot_id(ctx, node)})", data)
    return Outcome("failed", f"no reboot of {node} seen in {spec.timeout:.0f} s (bootID still {before or '-'})",
                   data, reason="reboot_timeout")


def validate_node(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    """On the still-cordoned node: the validation Job and every PromQL check must pass. A check
    Prometheus cannot answer is `blocked` (unknown), never a pass and never a hardware failure."""
    node, uuid = params["node"], str(params.get("uuid", ""))
    check_target(node, uuid)
    if not ctx.node(node).spec.unschedulable:
        return Outcome("blocked", f"{node} is schedulable; validation runs only on a cordoned node",
                       reason="not_cordoned")
    steps, data = [], {}
    job = ctx.settings.validate_job
    if job is not None or params.get("image"):
        out = run_node_job(ctx, kind="validate", spec=_spec(job or ctx.settings.reset_gpu, params), node=node,
                           uuid=uuid, gpu=str(params.get("gpu", "")), incident=incident)
        data.update(out.data)
        steps.append(out.detail)
        if out.state != "succeeded":
            return Outcome("failed", f"validation failed: {out.detail}", data, reason="validation_failed")
    deadline = parse_duration(params.get("deadline") or 120)
    for template in ctx.settings.validate_queries:
        compiled = compile_template(template, "validate query")
        query = compiled if isinstance(compiled, str) else compiled.render({"node": node, "uuid": uuid})
        if ctx.prom is None:
            return Outcome("blocked", f"{query}: no Prometheus configured", data, reason="validation_unknown")
        result = ctx.wait_for(lambda q=query: ctx.prom.check(q).holds, deadline, interval=2.0)
        last = ctx.prom.check(query)
        if not result and last.holds is None:
            return Outcome("blocked", f"validation unknown: {last.detail}", data, reason="validation_unknown")
        if not result:
            return Outcome("failed", f"validation failed: {last.detail}", data, reason="validation_failed")
        steps.append(last.detail)
    ctx.kube.event(ctx.node(node), "VigilValidated", f"Validation passed for incident {incident}")
    return Outcome("succeeded", "validation passed: " + ("; ".join(steps) or "nothing configured"), data)


def mark_rma(ctx: RepairContext, node: str, why: str, incident: str) -> Outcome:
    """No more automatic repair: keep the node cordoned, label it an RMA candidate, say why."""
    check_target(node)
    ctx.kube.cordon(node, incident)
    n = ctx.node(node)
    if (n.metadata.labels or {}).get(RMA_LABEL) == "true":
        return Outcome("succeeded", f"{node} is already an RMA candidate", {"why": why})
    ctx.kube._patch_node(node, {"metadata": {"labels": {RMA_LABEL: "true"},
                                             "annotations": {RMA_REASON_ANNOTATION: why[:1000]}}})
    ctx.kube.event(n, "VigilRmaCandidate", f"Incident {incident}: {why}", type_="Warning")
    return Outcome("succeeded", f"{node} marked {RMA_LABEL}=true and kept cordoned: {why}", {"why": why})
