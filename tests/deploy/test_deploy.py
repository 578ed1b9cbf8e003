"""The packaged stack: kustomize renders, the apiserver accepts it (server-side dry-run), the
remediator's ServiceAccount can do exactly what the example policy needs, and compose is valid."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml
from kubernetes import client

from remediator.cluster import executor as actions
from remediator.cluster.kube import Kube
from remediator.cluster.view import read_cluster_view
from tests.deploy.helm import install_operator_crds
from tests.k8s import bins
from tests.k8s.controlplane import add_gpu_nodes, wait_until


def kubectl(*args: str, kubeconfig=None, check=True) -> subprocess.CompletedProcess:
    cmd = [str(bins.binary("kubectl"))] + (["--kubeconfig", str(kubeconfig)] if kubeconfig else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


REPAIR_OVERLAYS = ["deploy/overlays/repair-job-reboot", "deploy/overlays/repair-medik8s",
                   "deploy/overlays/repair-cluster-api", "deploy/overlays/repair-karpenter"]


@pytest.mark.parametrize("overlay", ["deploy/base", "deploy/prometheus-operator", "deploy/overlays/sqlite",
                                     "deploy/overlays/gpu-exporter-state-hostpath", *REPAIR_OVERLAYS])
def test_kustomize_renders(overlay):
    objs = [o for o in yaml.safe_load_all(kubectl("kustomize", overlay).stdout) if o]
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "DaemonSet", "Deployment", "ServiceAccount", "ClusterRole", "PodDisruptionBudget",
            "ConfigMap", "Service"} <= kinds
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia" and pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    env = pod["containers"][0]["env"][0]
    assert env == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    if overlay.endswith("operator"):
        assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= kinds
    for o in objs:
        assert o["kind"] != "Secret", "the webhook token is never rendered from the repo"


@pytest.mark.k8s
def test_server_side_dry_run_apply(k8s_api):
    install_operator_crds(k8s_api)
    kubectl("create", "namespace", "vigil", kubeconfig=k8s_api.kubeconfig, check=False)
    kubectl("apply", "--server-side", "-k", "deploy/crds", kubeconfig=k8s_api.kubeconfig)  # CRDs before dry-runs
    k8s_api.wait_crds_established()
    kubectl("create", "namespace", "vigil-repair", kubeconfig=k8s_api.kubeconfig, check=False)
    for overlay in ("deploy/base", "deploy/prometheus-operator", "deploy/overlays/sqlite", *REPAIR_OVERLAYS):
        r = kubectl("apply", "--server-side", "--dry-run=server", "-k", overlay, kubeconfig=k8s_api.kubeconfig)
        assert "serverside-applied (server dry run)" in r.stdout


def _as_service_account(cp, token: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = cp.server
    cfg.ssl_ca_cert = str(cp.ca)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


@pytest.mark.k8s
def test_the_remediator_service_account_can_do_exactly_what_the_policy_needs(k8s_cluster, unique):
    cp = k8s_cluster
    objs = [o for o in yaml.safe_load_all(kubectl("kustomize", "deploy/base").stdout) if o]
    rbac = [o for o in objs if o["kind"] == "Namespace" or (
        o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding") and "remediator" in o["metadata"]["name"])]
    subprocess.run([str(bins.binary("kubectl")), "--kubeconfig", str(cp.kubeconfig), "apply", "-f", "-"],
                   input=yaml.safe_dump_all(rbac), text=True, check=True, capture_output=True, timeout=60)
    token = kubectl("-n", "vigil", "create", "token", "vigil-remediator", "--duration=1h",
                    kubeconfig=cp.kubeconfig).stdout.strip()
    admin = cp.api_client()
    sa = _as_service_account(cp, token)
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    ns = f"rbac-{unique}"
    core.create_namespace({"metadata": {"name": ns}})
    node = f"rbac-{unique}"
    add_gpu_nodes(admin, [node], pool=f"rbac-{unique}")
    labels = {"app": "llm"}
    apps.create_namespaced_deployment(ns, {"metadata": {"name": "llm"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "nodeSelector": {"vigil.io/pool": f"rbac-{unique}"}, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "s", "image": "example.invalid/llm:1"}]}}}})
    wait_until(lambda: len([p for p in core.list_namespaced_pod(ns).items if p.status.phase == "Running"]) == 2, 60,
               what="pods")
    apps.patch_namespaced_deployment("llm", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "s", "image": "example.invalid/llm:2"}]}}}})
    wait_until(lambda: len(apps.list_namespaced_replica_set(ns).items) == 2, 60, what="revision 2")
    core.create_namespaced_service(ns, {"metadata": {"name": "llm"}, "spec": {"selector": labels,
                                                                             "ports": [{"port": 80}]}})
    client.CustomObjectsApi(admin).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", ns, "httproutes", {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "llm"},
            "spec": {"rules": [{"backendRefs": [{"name": "a", "port": 80, "weight": 50},
                                                {"name": "b", "port": 80, "weight": 50}]}]}})

    kube = Kube(api_client=sa)
    view = read_cluster_view(kube)
    assert node in view.nodes
    pods = sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items if p.status.phase == "Running")
    steps = [  # workload actions first, while the pool's node takes pods; the node actions last
        ("quarantine_pod", {"namespace": ns, "pod": pods[0], "label": "app", "value": "q"}),
        ("restart_pod", {"namespace": ns, "pod": pods[1]}),
        ("rollout_restart", {"namespace": ns, "name": "llm"}),
        ("rollback_deployment", {"namespace": ns, "name": "llm"}),
        ("scale_deployment", {"namespace": ns, "name": "llm", "replicas": 3, "max": 3}),
        ("shift_traffic", {"namespace": ns, "route": "llm", "from": "a", "to": "b", "step": 50}),
        ("failover_service", {"namespace": ns, "service": "llm", "selector": {"app": "standby"}}),
        ("cordon_node", {"node": node}), ("taint_node", {"node": node, "key": "vigil.io/x", "value": "1"}),
        ("drain_node", {"node": node, "timeout": "20s"}), ("uncordon_node", {"node": node}),
    ]
    for i, (type_, params) in enumerate(steps):
        out = actions.execute(kube, type_, params, f"rbac-{i}")
        assert out.state == "succeeded", (type_, out)
    forbidden = client.CoreV1Api(sa)
    with pytest.raises(client.ApiException) as err:
        forbidden.delete_node(node)
    assert err.value.status == 403
    with pytest.raises(client.ApiException) as err:
        forbidden.list_namespaced_secret(ns)
    assert err.value.status == 403
    with pytest.raises(client.ApiException) as err:
        forbidden.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})
    assert err.value.status == 403


def test_docker_compose_config_is_valid(tmp_path):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: `make test` installs the Debian package docker-compose"
    token = tmp_path / "token"
    token.write_text("not-a-real-token")
    r = subprocess.run([compose, "config", "-q"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "VIGIL_WEBHOOK_TOKEN_FILE": str(token)})
    assert r.returncode == 0, r.stdout + r.stderr
    with open("docker-compose.yml") as f:
        cfg = yaml.safe_load(f)
    for name, svc in cfg["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert cfg["services"]["gpu-exporter-nvml"]["profiles"] == ["nvml"]
    assert "--backend" in cfg["services"]["gpu-exporter"]["command"]
    assert "simulated" in cfg["services"]["gpu-exporter"]["command"]
    with open("deploy/compose/vigil.yaml") as f:
        vigil = yaml.safe_load(f)
    assert vigil["safety"]["dry_run"] is True


def test_configs_shipped_in_the_deploy_are_valid(monkeypatch, tmp_path):
    from exporters.service.config import load_config as load_services
    from remediator.config import load_config

    token = tmp_path / "token"
    token.write_text("t")
    for role in ("intake", "read", "admin"):  # deploy/base: one Secret per caller
        (tmp_path / role).mkdir()
        (tmp_path / role / "token").write_text(role)
    for path in ("deploy/base/config/vigil.yaml", "deploy/overlays/sqlite/config/vigil.yaml",
                 "deploy/compose/vigil.yaml"):
        with open(path) as f:
            text = f.read()
        text = text.replace("/etc/vigil-secrets/", f"{tmp_path}/").replace(
            "/run/secrets/vigil-webhook-token", str(token))
        copy = tmp_path / "vigil.yaml"
        copy.write_text(text)
        config = load_config(copy)
        assert config.rules and config.safety.dry_run  # a first install acts on nothing
    for path in ("deploy/base/config/services.yaml", "deploy/compose/services.yaml"):
        load_services(path)
