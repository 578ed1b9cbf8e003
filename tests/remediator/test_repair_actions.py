"""Repair executors on the real local cluster, each with the remediator ServiceAccount's own token
bound by deploy/'s RBAC: the Jobs' specs, the SelfNodeRemediation, the Machine annotation and the
NodeClaim deletion on the real CRDs; 403 where deploy/base alone does not grant the provider."""

from __future__ import annotations

import dataclasses

import pytest
from kubernetes import client

from remediator.cluster import executor
from remediator.cluster.kube import Kube
from remediator.cluster.repair import RepairContext
from remediator.domain.repair import JobSpec, RepairSettings
from tests.k8s.controlplane import add_gpu_nodes, wait_until

from .repair_env import RepairEnv, install_crds, service_account_client

pytestmark = pytest.mark.k8s
FAILS = "example.invalid/vigil-test-fails:1"
SETTINGS = RepairSettings(
    reset_gpu=dataclasses.replace(RepairSettings().reset_gpu, timeout=30),
    reboot_job=dataclasses.replace(RepairSettings().reboot_job, timeout=20),
    validate_job=dataclasses.replace(RepairSettings().validate_job, timeout=30),
    pods_gone_timeout=2.0)


@pytest.fixture
def env(k8s_cluster, unique):
    def make(overlay: str = "deploy/overlays/repair-job-reboot", settings: RepairSettings = SETTINGS) -> RepairEnv:
        install_crds(k8s_cluster)
        sa = service_account_client(k8s_cluster, overlay, f"vigil-remediator-{unique}")
        kube = Kube(api_client=sa)
        return RepairEnv(k8s_cluster, k8s_cluster.api_client(), sa, kube, settings, RepairContext(kube, settings))
    return make


def _node(env: RepairEnv, unique: str, suffix: str = "n0", **annotations: str) -> str:
    name = f"repair-{unique}-{suffix}"
    add_gpu_nodes(env.admin, [name], pool=f"repair-{unique}")
    if annotations:
        env.core.patch_node(name, {"metadata": {"annotations": annotations}})
    return name


def _jobs(env: RepairEnv, node: str) -> list:
    jobs = client.BatchV1Api(env.admin).list_namespaced_job("vigil-repair").items
    return [j for j in jobs if j.spec.template.spec.node_name == node]


def _taints(env: RepairEnv, node: str) -> set[tuple[str, str, str]]:
    return {(t.key, t.value or "", t.effect) for t in env.core.read_node(node).spec.taints or []}


def _reasons(env: RepairEnv, node: str) -> set[str]:
    evs = env.core.list_namespaced_event("default", field_selector=f"involvedObject.name={node}").items
    return {e.reason for e in evs}


def test_reset_gpu_runs_a_pinned_privileged_job_once_per_incident(env, unique):
    e = env()
    node = _node(e, unique)
    e.core.patch_node(node, {"spec": {"taints": [{"key": "vigil.io/gpu-lost", "value": "gpu3", "effect": "NoSchedule"},
                                                 {"key": "other.io/x", "effect": "NoSchedule"}]}})
    uuid = f"GPU-{unique}-3"
    params = {"node": node, "uuid": uuid, "gpu": "3"}
    out = executor.execute(e.kube, "reset_gpu", params, "41", repair=e.ctx)
    assert out.state == "succeeded", out
    assert "attribution unknown" in out.detail  # no Prometheus here: every GPU pod on the node must be gone
    [job] = _jobs(e, node)
    pod = job.spec.template.spec
    assert pod.node_name == node and pod.restart_policy == "Never" and pod.runtime_class_name == "nvidia"
    assert job.spec.ttl_seconds_after_finished == 3600 and job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == 30
    tolerated = {(t.key, t.effect) for t in pod.tolerations}
    assert ("vigil.io/gpu-lost", "NoSchedule") in tolerated and ("node.kubernetes.io/unschedulable",
                                                                  "NoSchedule") in tolerated
    assert ("other.io/x", "NoSchedule") not in tolerated, "only Vigil's own taints are tolerated"
    [c] = pod.containers
    assert c.security_context.privileged is True
    assert c.command == ["/bin/sh", "-c", f"nvidia-smi -pm 0 -i {uuid} && nvidia-smi --gpu-reset -i {uuid}"]
    assert job.metadata.labels["vigil.io/incident"] == "41"
    assert "VigilResetGpu" in _reasons(e, node)
    again = executor.execute(e.kube, "reset_gpu", params, "41", repair=e.ctx)
    assert again.state == "succeeded" and len(_jobs(e, node)) == 1, "the same incident reuses its Job"


def test_reset_gpu_waits_for_the_gpu_pods_and_refuses_a_shell_in_a_label(env, unique):
    e = env()
    node = _node(e, unique)
    ns = f"gpu-{unique}"
    e.core.create_namespace({"metadata": {"name": ns}})
    e.core.create_namespaced_pod(ns, {"metadata": {"name": "trainer"}, "spec": {
        "nodeName": node, "containers": [{"name": "t", "image": "example.invalid/t:1",
                                          "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
    out = executor.execute(e.kube, "reset_gpu", {"node": node, "uuid": f"GPU-{unique}-0"}, "42", repair=e.ctx)
    assert out.state == "blocked" and out.reason == "gpu_in_use" and f"{ns}/trainer" in out.detail
    assert not _jobs(e, node)
    bad = executor.execute(e.kube, "reset_gpu", {"node": node, "uuid": "GPU-1; reboot"}, "43", repair=e.ctx)
    assert bad.state == "failed" and bad.reason == "bad_params" and not _jobs(e, node)


def _agent_reboots(e: RepairEnv, node: str, boot: str) -> None:
    """The simulated node: when the reboot Job appears, the node comes back with a new bootID."""
    wait_until(lambda: _jobs(e, node), 30, what="reboot Job")
    e.core.patch_node_status(node, {"status": {"nodeInfo": {"bootID": boot}}})


def test_reboot_by_job_cordons_drains_and_sees_the_new_boot_id(env, unique):
    e = env()
    node = _node(e, unique)
    e.background(lambda: _agent_reboots(e, node, f"boot-{unique}"))
    out = executor.execute(e.kube, "reboot_node", {"node": node}, "51", repair=e.ctx)
    assert out.state == "succeeded", out
    assert f"boot-{unique}" in out.detail
    assert e.core.read_node(node).spec.unschedulable, "a reboot first cordons the node"
    [job] = _jobs(e, node)
    pod = job.spec.template.spec
    assert pod.host_pid is True and pod.containers[0].security_context.privileged is True
    assert pod.containers[0].command[-1] == "chroot /host systemctl reboot"
    assert pod.volumes[0].host_path.path == "/" and pod.containers[0].volume_mounts[0].mount_path == "/host"
    assert job.spec.ttl_seconds_after_finished == 3600
    assert {"VigilCordon", "VigilDrain", "VigilReboot"} <= _reasons(e, node)


def test_a_reboot_that_never_happens_fails_at_its_deadline(env, unique):
    e = env(settings=dataclasses.replace(SETTINGS, reboot_job=dataclasses.replace(SETTINGS.reboot_job, timeout=3)))
    node = _node(e, unique)
    out = executor.execute(e.kube, "reboot_node", {"node": node}, "52", repair=e.ctx)
    assert out.state == "failed" and out.reason == "reboot_timeout", out


def test_reboot_by_medik8s_creates_a_self_node_remediation(env, unique):
    e = env("deploy/overlays/repair-medik8s", dataclasses.replace(SETTINGS, reboot_provider="medik8s"))
    node = _node(e, unique)
    objects = client.CustomObjectsApi(e.admin)
    seen = {}

    def operator() -> None:  # plays SNR: reports Succeeded once the CR exists
        snr = wait_until(lambda: _get_snr(objects, node), 30, what="SelfNodeRemediation")
        seen.update(snr)
        snr["status"] = {"phase": "Succeeded", "conditions": [{
            "type": "Succeeded", "status": "True", "reason": "RemediationFinished", "message": "rebooted",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        objects.replace_namespaced_custom_object_status("self-node-remediation.medik8s.io", "v1alpha1",
                                                         "vigil-repair", "selfnoderemediations", node, snr)

    e.background(operator)
    out = executor.execute(e.kube, "reboot_node", {"node": node}, "61", repair=e.ctx)
    assert out.state == "succeeded", out
    assert seen["spec"] == {"remediationStrategy": "Automatic"}
    assert seen["metadata"]["annotations"]["vigil.io/incident"] == "61"
    wait_until(lambda: _get_snr(objects, node) is None, 10, what="the SelfNodeRemediation deleted")


def _get_snr(objects, node: str) -> dict | None:
    try:
        return objects.get_namespaced_custom_object("self-node-remediation.medik8s.io", "v1alpha1", "vigil-repair",
                                                    "selfnoderemediations", node)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _machine(name: str) -> dict:
    return {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine", "metadata": {"name": name},
            "spec": {"clusterName": "gpu", "bootstrap": {"dataSecretName": "boot"},
                     "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "DockerMachine",
                                           "name": name}}}


def test_replace_by_cluster_api_annotates_the_nodes_machine(env, unique):
    e = env("deploy/overlays/repair-cluster-api", dataclasses.replace(SETTINGS, replace_provider="cluster-api"))
    ns = f"capi-{unique}"
    e.core.create_namespace({"metadata": {"name": ns}})
    objects = client.CustomObjectsApi(e.admin)
    objects.create_namespaced_custom_object("cluster.x-k8s.io", "v1beta2", ns, "machines", _machine("gpu-m0"))
    node = _node(e, unique, **{"cluster.x-k8s.io/machine": "gpu-m0", "cluster.x-k8s.io/cluster-namespace": ns,
                               "cluster.x-k8s.io/cluster-name": "gpu"})
    out = executor.execute(e.kube, "replace_node", {"node": node}, "71", repair=e.ctx)
    assert out.state == "succeeded", out
    m = objects.get_namespaced_custom_object("cluster.x-k8s.io", "v1beta2", ns, "machines", "gpu-m0")
    assert m["metadata"]["annotations"]["cluster.x-k8s.io/remediate-machine"] == ""
    assert e.core.read_node(node).spec.unschedulable
    again = executor.execute(e.kube, "replace_node", {"node": node}, "71", repair=e.ctx)
    assert again.state == "succeeded" and "already" in again.detail
    plain = _node(e, unique, "plain")
    out = executor.execute(e.kube, "replace_node", {"node": plain}, "72", repair=e.ctx)
    assert out.state == "failed" and out.reason == "not_managed"


def test_replace_by_karpenter_deletes_the_nodes_nodeclaim(env, unique):
    e = env("deploy/overlays/repair-karpenter", dataclasses.replace(SETTINGS, replace_provider="karpenter"))
    node = _node(e, unique)
    objects = client.CustomObjectsApi(e.admin)
    for name, node_name in ((f"claim-{unique}", node), (f"other-{unique}", "someone-else")):
        objects.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": name},
            "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
                     "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                       "values": ["p5.48xlarge"]}]}})
        objects.patch_cluster_custom_object_status("karpenter.sh", "v1", "nodeclaims", name,
                                                   {"status": {"nodeName": node_name}})
    out = executor.execute(e.kube, "replace_node", {"node": node}, "81", repair=e.ctx)
    assert out.state == "succeeded", out
    names = {c["metadata"]["name"] for c in objects.list_cluster_custom_object("karpenter.sh", "v1",
                                                                               "nodeclaims")["items"]}
    assert f"claim-{unique}" not in names and f"other-{unique}" in names
    assert e.core.read_node(node).spec.unschedulable


@pytest.mark.parametrize(("action", "settings", "expect"), [
    ("reset_gpu", SETTINGS, "jobs"),
    ("reboot_node", dataclasses.replace(SETTINGS, reboot_provider="medik8s"), "selfnoderemediations"),
    ("replace_node", dataclasses.replace(SETTINGS, replace_provider="cluster-api"), "machines"),
    ("replace_node", dataclasses.replace(SETTINGS, replace_provider="karpenter"), "nodeclaims"),
])
def test_deploy_base_alone_does_not_grant_the_providers(env, unique, action, settings, expect):
    e = env("deploy/base", settings)
    ns = f"capi-{unique}"
    node = _node(e, unique, **{"cluster.x-k8s.io/machine": "m", "cluster.x-k8s.io/cluster-namespace": ns})
    out = executor.execute(e.kube, action, {"node": node, "uuid": f"GPU-{unique}"}, "91", repair=e.ctx)
    assert out.state == "failed" and out.data.get("status") == 403, out
    assert expect in out.detail


def test_validation_passes_fails_and_runs_only_on_a_cordoned_node(env, unique):
    e = env()
    node = _node(e, unique)
    out = executor.execute(e.kube, "validate_node", {"node": node}, "101", repair=e.ctx)
    assert out.state == "blocked" and out.reason == "not_cordoned"
    e.core.patch_node(node, {"spec": {"unschedulable": True}})
    out = executor.execute(e.kube, "validate_node", {"node": node}, "102", repair=e.ctx)
    assert out.state == "succeeded", out
    [job] = _jobs(e, node)
    assert job.spec.template.spec.containers[0].command[-1] == "dcgmi diag -r 2"
    failing = dataclasses.replace(SETTINGS, validate_job=JobSpec(FAILS, "dcgmi diag -r 2", 30))
    ctx = RepairContext(e.kube, failing)
    out = executor.execute(e.kube, "validate_node", {"node": node}, "103", repair=ctx)
    assert out.state == "failed" and out.reason == "validation_failed", out
    assert "VigilValidated" in _reasons(e, node)


class _Exposition:
    """A scrape target serving gpu_allocation_info as the GPU exporter does (issue 17's series)."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        text = "# TYPE gpu_allocation_info gauge\n" + "".join(
            "gpu_allocation_info{" + ",".join(f'{k}="{v}"' for k, v in r.items()) + "} 1\n" for r in rows)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_drain_scope_gpu_evicts_only_the_pods_holding_the_faulty_gpu(env, unique, tmp_path):
    from remediator.cluster.prom import PromChecker
    from tests.stack import Stack

    e = env()
    node, other = _node(e, unique), _node(e, unique, "n1")
    ns = f"gpu-{unique}"
    e.core.create_namespace({"metadata": {"name": ns}})
    for pod in ("on-gpu3", "on-gpu1"):
        e.core.create_namespaced_pod(ns, {"metadata": {"name": pod}, "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "x.invalid/c"}]}})
    uuid3 = f"GPU-{unique}-3"
    target = _Exposition([{"gpu": "3", "uuid": uuid3, "namespace": ns, "pod": "on-gpu3", "container": "c"},
                          {"gpu": "1", "uuid": f"GPU-{unique}-1", "namespace": ns, "pod": "on-gpu1", "container": "c"}])
    stack = Stack(tmp_path)
    try:
        url = stack.start_prometheus([{"job_name": "vigil-gpu-exporter", "static_configs": [
            {"targets": [target.target], "labels": {"node": node}}]}])
        prom = PromChecker(url)
        wait_until(lambda: prom.series(f'gpu_allocation_info{{node="{node}"}}'), 30, what="the series scraped")
        ctx = RepairContext(e.kube, SETTINGS, prom)
        out = executor.execute(e.kube, "drain_node", {"node": node, "scope": "gpu", "uuid": uuid3, "timeout": "20s"},
                               "111", repair=ctx)
        assert out.state == "succeeded", out
        assert out.data["evicted"] == [f"{ns}/on-gpu3"] and "1 pods hold" in out.data["scope"]
        assert {p.metadata.name for p in e.core.list_namespaced_pod(ns).items} == {"on-gpu1"}
        # New pods stay off the GPU until its reset ends: a taint naming it (Kubernetes has no per-GPU fence).
        hold = (f"vigil.io/reset-{uuid3}", "111", "NoSchedule")
        assert hold in _taints(e, node) and "until the GPU's reset ends" in out.data["held"], out
        reset = executor.execute(e.kube, "reset_gpu", {"node": node, "uuid": uuid3}, "111", repair=ctx)
        assert reset.state == "succeeded" and "all gone" in reset.detail, reset
        assert hold not in _taints(e, node) and "untainted" in reset.data["released"], reset
        assert not e.core.read_node(node).spec.unschedulable
        unknown = executor.execute(e.kube, "drain_node", {"node": other, "scope": "gpu", "uuid": uuid3}, "112",
                                   repair=ctx)
        assert unknown.state == "succeeded" and "draining the whole node" in unknown.data["scope"], unknown
        # No GPU to name: a cordon is all that keeps new pods off, and the result says so.
        third = _node(e, unique, "n2")
        nameless = executor.execute(e.kube, "drain_node", {"node": third, "scope": "gpu"}, "113", repair=ctx)
        assert nameless.state == "succeeded" and "cordon cordoned instead" in nameless.data["held"], nameless
        assert e.core.read_node(third).spec.unschedulable
    finally:
        stack.stop()
        target.close()
