"""The repair providers' world on the session cluster: the real CRDs (Cluster API Machine and
Karpenter NodeClaim from their modules, the minimal SelfNodeRemediation declared here), the
`nvidia` RuntimeClass, the repair namespace, and a ServiceAccount bound by deploy/'s RBAC as
rendered from an overlay (or from the base alone), whose token the executors use."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client

from remediator.cluster.kube import Kube
from remediator.cluster.repair import RepairContext
from remediator.domain.repair import RepairSettings
from tests.k8s import bins

SNR_CRD = Path(__file__).with_name("crds") / "self-node-remediation.medik8s.io_selfnoderemediations.yaml"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Namespace")
_installed: set[str] = set()
_lock = threading.Lock()


def install_crds(cp) -> None:
    """Once per session cluster: the CRDs, the RuntimeClass and the repair namespace."""
    with _lock:
        if cp.server in _installed:
            return
        for path in [*bins.repair_crds(), SNR_CRD]:
            cp.kubectl("apply", "--server-side", "-f", str(path))
        cp.wait_crds_established()
        cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
            {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"},
             "handler": "nvidia"},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vigil"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vigil-repair"}}]))
        _installed.add(cp.server)


def rbac_objects(overlay: str, sa_name: str) -> list[dict]:
    """deploy/'s RBAC from `overlay`, with every vigil-remediator name made `sa_name` (so each test
    has a ServiceAccount of its own and the grants of one test never leak into another)."""
    rendered = subprocess.run([str(bins.binary("kubectl")), "kustomize", overlay], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    objs = [o for o in yaml.safe_load_all(rendered) if o and o["kind"] in RBAC_KINDS]
    objs = [o for o in objs if o["kind"] == "Namespace" or "remediator" in o["metadata"]["name"]]
    return [yaml.safe_load(yaml.safe_dump(o).replace("vigil-remediator", sa_name)) for o in objs]


@dataclass
class RepairEnv:
    cp: object
    admin: client.ApiClient
    sa: client.ApiClient
    kube: Kube
    settings: RepairSettings
    ctx: RepairContext
    agents: list[threading.Thread] = field(default_factory=list)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.admin)

    def background(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self.agents.append(t)


def service_account_client(cp, overlay: str, sa_name: str) -> client.ApiClient:
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac_objects(overlay, sa_name)))
    token = cp.kubectl("-n", "vigil", "create", "token", sa_name, "--duration=1h").stdout.strip()
    cfg = client.Configuration()
    cfg.host = cp.server
    cfg.ssl_ca_cert = str(cp.ca)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)
