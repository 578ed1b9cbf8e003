"""Where the control plane's binaries are: built by `make k8s-bins`, or an envtest install."""

from __future__ import annotations

import os
from pathlib import Path

K8S_VERSION = "v1.34.4"
GATEWAY_API_VERSION = "v1.4.1"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
CLUSTER_API_VERSION = "v1.14.2"
KARPENTER_VERSION = "v1.14.1"
HELM_VERSION = "v3.22.0"
CACHE_ROOT = Path(os.environ.get("VIGIL_K8S_CACHE", Path.home() / ".cache/vigil/k8s"))
CACHE = CACHE_ROOT / K8S_VERSION
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")


class MissingBinary(RuntimeError):
    pass


def binary(name: str) -> Path:
    """An envtest install ($KUBEBUILDER_ASSETS) wins for the binaries it has."""
    candidates = []
    if os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(os.environ["KUBEBUILDER_ASSETS"]) / name)
    candidates.append(CACHE / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise MissingBinary(f"{name} not found in {' or '.join(map(str, candidates))}: run `make k8s-bins`")


def prometheus_operator_crds() -> Path:
    path = CACHE / f"prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}-crds.yaml"
    if not path.is_file():
        raise MissingBinary(f"{path} is missing: run `make k8s-bins`")
    return path


def gateway_api_crds() -> Path:
    path = CACHE / f"gateway-api-{GATEWAY_API_VERSION}-standard.yaml"
    if not path.is_file():
        raise MissingBinary(f"{path} is missing: run `make k8s-bins`")
    return path


def repair_crds() -> list[Path]:
    """Cluster API's Machine and Karpenter's NodeClaim CRDs (from their modules at pinned versions)."""
    paths = [CACHE / f"cluster-api-{CLUSTER_API_VERSION}-machines.yaml",
             CACHE / f"karpenter-{KARPENTER_VERSION}-nodeclaims.yaml"]
    for path in paths:
        if not path.is_file():
            raise MissingBinary(f"{path} is missing: run `make k8s-bins`")
    return paths


def helm() -> Path:
    """helm, built by `make k8s-bins` (scripts/k8s-bins.sh) from the Go module proxy."""
    path = CACHE_ROOT / f"helm-{HELM_VERSION}" / "helm"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinary(f"{path} not found: run `make k8s-bins`")
    return path
