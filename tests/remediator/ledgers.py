"""Opening Kubernetes ledgers on the local apiserver, for the contract suite and the HA tests."""

from __future__ import annotations

from pathlib import Path

from remediator.cluster.incidents_api import IncidentsAPI
from remediator.store.kubernetes import KubernetesLedger

CRDS = Path(__file__).resolve().parents[2] / "deploy/crds/vigil.io.yaml"


def apply_crds(cp) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(CRDS))
    cp.wait_crds_established()


def open_kubernetes(cp, ns: str, token: tuple[str, int] | None = None, **kw) -> KubernetesLedger:
    lg = KubernetesLedger(IncidentsAPI(cp.api_client(), ns), **kw)
    if token is not None:
        lg.set_token(lambda: token)
    return lg
