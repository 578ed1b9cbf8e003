"""Every Vigil pod meets the `restricted` Pod Security Standard (chart and kustomize), checked by the
apiserver's own Pod Security admission on the Pods the workloads would create. The GPU exporter's
kernel-log and pod-resources options are the documented exception: rejected there, admitted in a
`privileged` namespace (a hostPath volume already fails `baseline`). Every container has resource
requests, a liveness and a readiness probe."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.helm import KPS_VALUES, as_pod, pod_templates, render_chart, render_kustomize
from tests.k8s import bins

OPT_INS = {"kernel-log": {"gpuExporter__kernelLog__enabled": True},
           "pod-resources": {"gpuExporter__podResources__enabled": True},
           "both": {"gpuExporter__kernelLog__enabled": True, "gpuExporter__podResources__enabled": True},
           "fault-state-hostpath": {"gpuExporter__faultState__hostPath": True}}
RENDERINGS = {
    "chart-default": lambda: render_chart(),
    "chart-kube-prometheus-stack": lambda: render_chart(KPS_VALUES),
    "chart-kubernetes-ledger": lambda: render_chart(remediator__ledger__backend="kubernetes", remediator__replicas=3),
    "kustomize-base": lambda: render_kustomize("deploy/base"),
}


def _kubectl(cp, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bins.binary("kubectl")), "--kubeconfig", str(cp.kubeconfig), *args], input=input,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def namespaces(k8s_api):
    """A namespace per Pod Security level, and the `nvidia` RuntimeClass the GPU exporter names."""
    out = {}
    for level in ("restricted", "baseline", "privileged"):
        name = f"psa-{level}"
        _kubectl(k8s_api, "apply", "--server-side", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
                "pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": level}}}))
        out[level] = name
    rc = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"}
    r = _kubectl(k8s_api, "apply", "--server-side", "-f", "-", input=yaml.safe_dump(rc))
    assert r.returncode == 0, r.stderr
    return out


def _admit(cp, name: str, template: dict, namespace: str) -> subprocess.CompletedProcess:
    return _kubectl(cp, "create", "--dry-run=server", "-f", "-",
                    input=yaml.safe_dump(as_pod(name, template, namespace)))


@pytest.mark.k8s
@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_every_pod_is_admitted_in_a_restricted_namespace(k8s_api, namespaces, rendering):
    objs = RENDERINGS[rendering]()
    templates = pod_templates(objs)
    assert {"vigil-gpu-exporter", "vigil-service-exporter", "vigil-remediator"} <= set(templates)
    for name, template in templates.items():
        r = _admit(k8s_api, name, template, namespaces["restricted"])
        assert r.returncode == 0, f"{rendering}/{name}: {r.stderr}"
        assert "created (server dry run)" in r.stdout
    # The workloads themselves: admission only warns for them, and must have nothing to warn about.
    workloads = [{**o, "metadata": {**o["metadata"], "namespace": namespaces["restricted"]}}
                 for o in objs if o["kind"] in ("Deployment", "DaemonSet")]
    r = _kubectl(k8s_api, "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(workloads))
    assert r.returncode == 0 and "would violate PodSecurity" not in r.stderr, r.stderr
    assert r.stdout.count("serverside-applied (server dry run)") == len(workloads)


@pytest.mark.k8s
@pytest.mark.parametrize("opt_in", sorted(OPT_INS))
def test_gpu_exporter_opt_ins_need_a_privileged_namespace(k8s_api, namespaces, opt_in):
    template = pod_templates(render_chart(**OPT_INS[opt_in]))["vigil-gpu-exporter"]
    rejected = _admit(k8s_api, "vigil-gpu-exporter", template, namespaces["restricted"])
    assert rejected.returncode != 0 and "violates PodSecurity" in rejected.stderr, rejected.stdout
    assert 'restricted volume type "hostPath"' in rejected.stderr
    baseline = _admit(k8s_api, "vigil-gpu-exporter", template, namespaces["baseline"])  # hostPath fails baseline too
    assert baseline.returncode != 0 and "hostPath volumes" in baseline.stderr, baseline.stdout
    admitted = _admit(k8s_api, "vigil-gpu-exporter", template, namespaces["privileged"])
    assert admitted.returncode == 0, admitted.stderr


@pytest.mark.parametrize("opt_in", sorted(OPT_INS))
def test_gpu_exporter_opt_ins_render_only_when_enabled(opt_in):
    sets = OPT_INS[opt_in]
    pod = pod_templates(render_chart(**sets))["vigil-gpu-exporter"]["spec"]
    args = pod["containers"][0]["args"]
    paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    kernel, resources = "gpuExporter__kernelLog__enabled" in sets, "gpuExporter__podResources__enabled" in sets
    state = "gpuExporter__faultState__hostPath" in sets
    assert ("/dev/kmsg" in paths, "--kernel-log" in args) == (kernel, kernel)
    assert ("/var/lib/kubelet/pod-resources" in paths, "--pod-resources-socket" in args) == (resources, resources)
    assert ("/var/lib/vigil-gpu-exporter" in paths) == state
    assert pod["containers"][0]["securityContext"].get("privileged", False) == kernel
    default = pod_templates(render_chart())["vigil-gpu-exporter"]["spec"]
    assert not [v for v in default["volumes"] if "hostPath" in v]
    assert "--kernel-log" not in default["containers"][0]["args"]
    assert "--pod-resources-socket" not in default["containers"][0]["args"]
    assert default["runtimeClassName"] == "nvidia" and not default["containers"][0]["securityContext"].get("privileged")


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
def test_every_container_has_requests_and_both_probes(rendering):
    for name, template in pod_templates(RENDERINGS[rendering]()).items():
        for c in template["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (name, c["name"])
            live, ready = c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]
            assert (live, ready) == ("/healthz", "/readyz"), (name, live, ready)


@pytest.mark.k8s
def test_with_the_namespace_split_the_release_namespace_stays_restricted(k8s_api, namespaces):
    """The opt-ins need `privileged`, but only the DaemonSet's own namespace gets it (gpuExporter.namespace):
    every other pod is admitted under enforce=restricted, the DaemonSet's in the privileged namespace."""
    objs = render_chart(gpuExporter__namespace__name="vigil-gpu", gpuExporter__namespace__create=True,
                        **OPT_INS["both"])
    ds = [o for o in objs if o["kind"] == "DaemonSet"]
    assert [o["metadata"]["namespace"] for o in ds] == ["vigil-gpu"]
    templates = pod_templates(objs)
    for name, template in templates.items():
        level = "privileged" if name == "vigil-gpu-exporter" else "restricted"
        r = _admit(k8s_api, name, template, namespaces[level])
        assert r.returncode == 0, f"{name} in {level}: {r.stderr}"
    assert len(templates) == 3


@pytest.mark.parametrize("rendering", ["chart-default", "kustomize-base"])
def test_gpu_exporter_keeps_its_pending_faults_in_an_empty_dir_by_default(rendering):
    """Restricted by default: an emptyDir outlives a container restart; the hostPath is the opt-in."""
    pod = pod_templates(RENDERINGS[rendering]())["vigil-gpu-exporter"]["spec"]
    c = pod["containers"][0]
    assert c["args"][c["args"].index("--state-dir") + 1] == "/var/lib/vigil-gpu-exporter"
    assert {"name": "fault-state", "mountPath": "/var/lib/vigil-gpu-exporter"} in c["volumeMounts"]
    assert {"name": "fault-state", "emptyDir": {}} in pod["volumes"]


@pytest.mark.parametrize("rendering", [
    lambda: render_chart(gpuExporter__faultState__hostPath=True),
    lambda: render_kustomize("deploy/overlays/gpu-exporter-state-hostpath")], ids=["chart", "kustomize"])
def test_gpu_exporter_pending_faults_on_a_host_path_run_as_root(rendering):
    pod = pod_templates(rendering())["vigil-gpu-exporter"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "fault-state"]
    assert volume == {"name": "fault-state", "hostPath": {"path": "/var/lib/vigil-gpu-exporter",
                                                          "type": "DirectoryOrCreate"}}
    assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False
