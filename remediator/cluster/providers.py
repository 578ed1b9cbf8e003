"""Reboot and replace providers, chosen by the `repair` config (or a rule step's `provider`):

- reboot `job`: a privileged Job on the node runs the configured command; the reboot is seen as a
  new bootID on a Ready node. `medik8s`: a SelfNodeRemediation named after the node
  (self-node-remediation.medik8s.io/v1alpha1, namespaced), deleted again once the node is back.
- replace `cluster-api`: the node's Machine (annotations cluster.x-k8s.io/machine and
  cluster.x-k8s.io/cluster-namespace) gets cluster.x-k8s.io/remediate-machine; the
  MachineHealthCheck that selects it replaces it. `karpenter`: the NodeClaim whose status.nodeName
  is the node is deleted; Karpenter drains the node and terminates the instance.

Each first cordons the node (idempotent), so nothing new lands on it while it goes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from remediator.cluster.jobs import check_target
from remediator.cluster.kube import _wrap
from remediator.cluster.outcome import Outcome
from remediator.cluster.repair import (
    RepairContext,
    boot_id,
    mark_rma,
    prepare_node,
    reboot_by_job,
    rebooted,
)
from remediator.cluster.retry import KubeError
from vigil_common.durations import parse_duration

log = logging.getLogger(__name__)
SNR = ("self-node-remediation.medik8s.io", "v1alpha1", "selfnoderemediations")
CAPI_GROUP = "cluster.x-k8s.io"
MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"
MACHINE_NS_ANNOTATION = "cluster.x-k8s.io/cluster-namespace"
REMEDIATE_ANNOTATION = "cluster.x-k8s.io/remediate-machine"
NODECLAIMS = ("karpenter.sh", "v1", "nodeclaims")


def _objects(ctx: RepairContext) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(ctx.kube.api)


def _snr_succeeded(ctx: RepairContext, node: str) -> bool:
    try:
        obj = ctx.kube.call(_objects(ctx).get_namespaced_custom_object, *SNR[:2], ctx.settings.namespace, SNR[2], node)
    except ApiException as exc:
        raise _wrap(exc) from exc
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Succeeded" and c.get("status") == "True" for c in conditions)


def reboot_by_medik8s(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    """SNR cannot confirm a reboot itself (it assumes one after a safe time), so Vigil waits for
    a new bootID on a Ready node or SNR's own Succeeded condition, then deletes the CR."""
    node = params["node"]
    check_target(node)
    ns = ctx.settings.namespace
    objects = _objects(ctx)
    before = boot_id(ctx, node)
    body = {"apiVersion": f"{SNR[0]}/{SNR[1]}", "kind": "SelfNodeRemediation",
            "metadata": {"name": node, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "vigil"},
                         "annotations": {"vigil.io/incident": incident}},
            "spec": {"remediationStrategy": ctx.settings.medik8s_strategy}}
    try:
        ctx.kube.call(objects.create_namespaced_custom_object, *SNR[:2], ns, SNR[2], body)
        created = True
    except ApiException as exc:
        if exc.status != 409:
            raise _wrap(exc) from exc
        created = False  # this incident's, after a restart, or a remediation already under way
    n = ctx.node(node)
    if created:
        ctx.kube.event(n, "VigilReboot", f"SelfNodeRemediation {ns}/{node} created for incident {incident}")
    data = {"self_node_remediation": f"{ns}/{node}", "created": created}
    timeout = ctx.settings.reboot_job.timeout
    if not ctx.wait_for(lambda: rebooted(ctx, node, before) or _snr_succeeded(ctx, node), timeout, interval=1.0):
        return Outcome("failed", f"no reboot of {node} seen in {timeout:.0f} s after SelfNodeRemediation "
                                 f"{ns}/{node}", data, reason="reboot_timeout")
    try:
        ctx.kube.call(objects.delete_namespaced_custom_object, *SNR[:2], ns, SNR[2], node)
    except ApiException as exc:
        if exc.status != 404:
            raise _wrap(exc) from exc
    return Outcome("succeeded", f"{node} remediated by SelfNodeRemediation {ns}/{node}", data)


def replace_by_cluster_api(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    node = params["node"]
    annotations = ctx.node(node).metadata.annotations or {}
    machine, ns = annotations.get(MACHINE_ANNOTATION), annotations.get(MACHINE_NS_ANNOTATION)
    if not machine or not ns:
        return Outcome("failed", f"{node} has no {MACHINE_ANNOTATION} and {MACHINE_NS_ANNOTATION} annotations: "
                                 "not a Cluster API node", reason="not_managed")
    version = ctx.settings.cluster_api_version
    objects = _objects(ctx)
    try:
        obj = ctx.kube.call(objects.get_namespaced_custom_object, CAPI_GROUP, version, ns, "machines", machine)
        data = {"machine": f"{ns}/{machine}"}
        if REMEDIATE_ANNOTATION in (obj["metadata"].get("annotations") or {}):
            return Outcome("succeeded", f"Machine {ns}/{machine} already asked for remediation", data)
        ctx.kube.call(objects.patch_namespaced_custom_object, CAPI_GROUP, version, ns, "machines", machine,
                      {"metadata": {"annotations": {REMEDIATE_ANNOTATION: "", "vigil.io/incident": incident}}})
    except ApiException as exc:
        raise _wrap(exc) from exc
    ctx.kube.event(ctx.node(node), "VigilReplace", f"Machine {ns}/{machine} annotated {REMEDIATE_ANNOTATION} for "
                   f"incident {incident}")
    return Outcome("succeeded", f"Machine {ns}/{machine} annotated {REMEDIATE_ANNOTATION}: its "
                                "MachineHealthCheck replaces it", data)


def replace_by_karpenter(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    node = params["node"]
    n = ctx.node(node)
    objects = _objects(ctx)
    try:
        claims = ctx.kube.call(objects.list_cluster_custom_object, *NODECLAIMS)["items"]
    except ApiException as exc:
        raise _wrap(exc) from exc
    provider_id = n.spec.provider_id or ""
    claim = next((c for c in claims if (c.get("status") or {}).get("nodeName") == node), None) or next(
        (c for c in claims if provider_id and (c.get("status") or {}).get("providerID") == provider_id), None)
    if claim is None:
        return Outcome("failed", f"no NodeClaim has status.nodeName {node}: not a Karpenter node",
                       reason="not_managed")
    name = claim["metadata"]["name"]
    data = {"nodeclaim": name}
    if claim["metadata"].get("deletionTimestamp"):
        return Outcome("succeeded", f"NodeClaim {name} is already being deleted", data)
    try:
        ctx.kube.call(objects.delete_cluster_custom_object, *NODECLAIMS, name)
    except ApiException as exc:
        if exc.status != 404:
            raise _wrap(exc) from exc
    ctx.kube.event(n, "VigilReplace", f"NodeClaim {name} deleted for incident {incident}")
    return Outcome("succeeded", f"NodeClaim {name} deleted: Karpenter drains {node} and replaces it", data)


Executor = Callable[[RepairContext, dict[str, Any], str], Outcome]
REBOOT: dict[str, Executor] = {"job": reboot_by_job, "medik8s": reboot_by_medik8s}
REPLACE: dict[str, Executor] = {"cluster-api": replace_by_cluster_api, "karpenter": replace_by_karpenter}


def reboot_node(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    provider = params.get("provider") or ctx.settings.reboot_provider
    if provider not in REBOOT:
        raise ValueError(f"reboot provider {provider!r} (known: {', '.join(REBOOT)})")
    check_target(params["node"])
    blocked = prepare_node(ctx, params["node"], incident, params)
    return blocked or REBOOT[provider](ctx, params, incident)


def replace_node(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    provider = params.get("provider") or ctx.settings.replace_provider
    if provider not in REPLACE:
        return Outcome("failed", f"no replace provider configured (repair.replace.provider: "
                                 f"{', '.join(REPLACE)})", reason="not_configured")
    check_target(params["node"])
    ctx.kube.cordon(params["node"], incident)
    asked = REPLACE[provider](ctx, params, incident)
    if asked.state != "succeeded":
        return asked
    timeout = parse_duration(params["timeout"]) if params.get("timeout") not in (None, "") else \
        ctx.settings.replace_timeout
    return _confirmed(ctx, params["node"], asked, timeout)


def _confirmed(ctx: RepairContext, node: str, asked: Outcome, timeout: float) -> Outcome:
    """A replacement is done when it is seen done, not when it was asked for: the old Machine or
    NodeClaim gone (its controller replaced it), or the Node object gone. Not seen within `timeout`:
    failed (`replace_unconfirmed`), the node kept cordoned for people."""
    gone = ctx.wait_for(lambda: _replaced(ctx, node, asked.data), timeout, interval=1.0)
    if gone:
        return Outcome("succeeded", f"{asked.detail}; confirmed: {gone}", {**asked.data, "confirmed": gone})
    return Outcome("failed", f"{asked.detail}; not confirmed within {timeout:.0f} s: the old machine and node are "
                   "still there", asked.data, reason="replace_unconfirmed")


def _replaced(ctx: RepairContext, node: str, data: dict[str, Any]) -> str:
    objects = _objects(ctx)
    try:
        if "machine" in data:
            ns, name = data["machine"].split("/", 1)
            if _absent(lambda: ctx.kube.call(objects.get_namespaced_custom_object, CAPI_GROUP,
                                             ctx.settings.cluster_api_version, ns, "machines", name)):
                return f"Machine {data['machine']} deleted"
        if "nodeclaim" in data:  # listed, as the provider found it (its RBAC lists and deletes NodeClaims)
            claims = ctx.kube.call(objects.list_cluster_custom_object, *NODECLAIMS)["items"]
            if data["nodeclaim"] not in {c["metadata"]["name"] for c in claims}:
                return f"NodeClaim {data['nodeclaim']} deleted"
        if _absent(lambda: ctx.kube.call(ctx.kube.core.read_node, node)):
            return f"Node {node} deleted"
    except (ApiException, KubeError) as exc:  # unknown is not done: looked at again until the timeout
        log.warning("replacement of %s: %s", node, exc)
    return ""


def _absent(read: Callable[[], Any]) -> bool:
    try:
        read()
    except (ApiException, KubeError) as exc:
        if exc.status == 404:
            return True
        raise
    return False


def mark_rma_candidate(ctx: RepairContext, params: dict[str, Any], incident: str) -> Outcome:
    return mark_rma(ctx, params["node"], params.get("reason") or "the policy's ladder ended here", incident)

