"""Render the Helm chart and the kustomize overlays into comparable objects (shared by the deploy tests)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.k8s import bins

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy/helm/vigil"
KPS_VALUES = REPO / "deploy/helm/values-kube-prometheus-stack.yaml"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")


def run(cmd: list[str], *, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, input=input, cwd=REPO)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def helm(*args: str) -> subprocess.CompletedProcess:
    return run([str(bins.helm()), *args])


def render_chart(*values_files: Path, release: str = "vigil", namespace: str = "vigil", **sets: object) -> list[dict]:
    """What `helm install` would create, the CRDs of the chart's crds/ first."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--include-crds"]
    for f in values_files:
        args += ["-f", str(f)]
    for key, value in sets.items():
        args += ["--set", f"{key.replace('__', '.')}={str(value).lower() if isinstance(value, bool) else value}"]
    return [o for o in yaml.safe_load_all(helm(*args).stdout) if o]


def render_kustomize(overlay: str) -> list[dict]:
    return [o for o in yaml.safe_load_all(run([str(bins.binary("kubectl")), "kustomize", overlay]).stdout) if o]


def pod_templates(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"] for o in objs if o["kind"] in WORKLOADS}


def as_pod(name: str, template: dict, namespace: str) -> dict:
    """The Pod a workload would create: what Pod Security admission enforces on."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                            "labels": template["metadata"].get("labels", {})},
            "spec": template["spec"]}


_HASHED = re.compile(r"-[a-z0-9]{10}$")  # kustomize's configMapGenerator suffix


def normalized(obj: dict) -> dict:
    """What must agree between chart and kustomize: spec and content, without labels, selectors, the
    generator's hash suffix, the chart's checksum annotations and image pull policy."""
    o = yaml.safe_load(yaml.safe_dump(obj))
    kind = o["kind"]
    if kind == "ConfigMap":
        o["metadata"]["name"] = _HASHED.sub("", o["metadata"]["name"])
        return {"kind": kind, "name": o["metadata"]["name"],
                "data": {k: yaml.safe_load(v) for k, v in o.get("data", {}).items()}}
    out = {"kind": kind, "name": o["metadata"]["name"]}
    if kind in ("ClusterRole", "Role"):
        out["rules"] = o["rules"]
    elif kind in ("ClusterRoleBinding", "RoleBinding"):
        out.update(roleRef=o["roleRef"], subjects=o["subjects"])
    elif kind in WORKLOADS:
        spec = o["spec"]
        pod = spec["template"]["spec"]
        for v in pod.get("volumes", []):
            if "configMap" in v:
                v["configMap"]["name"] = _HASHED.sub("", v["configMap"]["name"])
        for c in pod["containers"]:
            c.pop("imagePullPolicy", None)
        for term in pod.get("affinity", {}).get("podAntiAffinity", {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution", []):
            term.pop("labelSelector", None)  # the pod's own labels: differ as the selectors do
        spec.pop("selector")
        spec.pop("template")
        out.update(spec=spec, pod=pod)
    elif kind in ("Service", "PodMonitor", "ServiceMonitor", "PodDisruptionBudget"):
        spec = o["spec"]
        spec.pop("selector", None)
        out["spec"] = spec
    elif "spec" in o:
        out["spec"] = o["spec"]
    return out


def install_operator_crds(cp) -> None:
    """The Prometheus Operator CRDs (PodMonitor, ServiceMonitor, PrometheusRule, AlertmanagerConfig), Established.
    (`kubectl wait --all` fails on a CRD created a moment ago that has no status yet; this waits it out.)"""
    from kubernetes import client

    from tests.k8s.controlplane import wait_until

    path = bins.prometheus_operator_crds()
    run([str(bins.binary("kubectl")), "--kubeconfig", str(cp.kubeconfig), "apply", "--server-side", "-f", str(path)])
    names = [f"{k}.monitoring.coreos.com" for k in ("podmonitors", "servicemonitors", "prometheusrules",
                                                     "alertmanagerconfigs")]
    assert f"name: {names[-1]}" in path.read_text(), f"{path} predates AlertmanagerConfig: run `make k8s-bins`"
    ext = client.ApiextensionsV1Api(cp.api_client())

    def established() -> bool:
        return all(any(c.type == "Established" and c.status == "True"
                       for c in (ext.read_custom_resource_definition(n).status.conditions or [])) for n in names)

    wait_until(established, 60, what="Prometheus Operator CRDs Established")
