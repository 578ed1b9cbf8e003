"""The highly available layout: deploy/base runs 3 replicas with the ledger in the Kubernetes API and
a Lease; deploy/overlays/sqlite is the single-replica layout. The ServiceAccount's namespaced Role
covers the Lease and the ledger's objects and nothing more, and `kubectl get vigilincidents -n
vigil` lists what the remediator recorded."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
import yaml
from kubernetes import client

from remediator.cluster.incidents_api import IncidentsAPI
from remediator.cluster.lease import LeaseElector
from remediator.config import LeaderElection
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import parse
from remediator.store.kubernetes import KubernetesLedger
from tests.deploy.test_deploy import _as_service_account, kubectl
from tests.k8s import bins
from tests.remediator.payloads import alert, body, xid_labels


def render(path: str) -> list[dict]:
    return [o for o in yaml.safe_load_all(kubectl("kustomize", path).stdout) if o]


def one(objs: list[dict], kind: str, name: str = "vigil-remediator") -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name))


def test_base_runs_three_replicas_on_the_kubernetes_ledger():
    objs = render("deploy/base")
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert one(objs, "PodDisruptionBudget")["spec"] == {"minAvailable": 2,
                                                         "selector": {"matchLabels": {"app": "vigil-remediator"}}}
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"], "no volume: the ledger is in the API"
    crds = {o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert crds == {"vigilincidents.vigil.io", "vigilstates.vigil.io"}
    config = yaml.safe_load(one(objs, "ConfigMap", "vigil-remediator-config")["data"]["vigil.yaml"])
    assert config["ledger"] == {"backend": "kubernetes", "namespace": "vigil"}
    role = one(objs, "Role")
    assert {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("coordination.k8s.io", "leases"), ("vigil.io", "vigilincidents"), ("vigil.io", "vigilstates")}


def test_sqlite_overlay_is_one_replica_with_a_volume():
    objs = render("deploy/overlays/sqlite")
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert "podAntiAffinity" not in dep["spec"]["template"]["spec"]["affinity"]
    assert {"name": "ledger", "persistentVolumeClaim": {"claimName": "vigil-ledger"}} in \
        dep["spec"]["template"]["spec"]["volumes"]
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(objs, "PersistentVolumeClaim", "vigil-ledger")["metadata"]["namespace"] == "vigil"
    config = yaml.safe_load(one(objs, "ConfigMap", "vigil-remediator-config")["data"]["vigil.yaml"])
    assert config["ledger"] == {"path": "/var/lib/vigil/ledger.db"}  # backend: sqlite, the default


def test_the_two_configs_differ_only_in_the_ledger():
    with open("deploy/base/config/vigil.yaml") as a, open("deploy/overlays/sqlite/config/vigil.yaml") as b:
        base, sqlite = yaml.safe_load(a), yaml.safe_load(b)
    base.pop("ledger")
    sqlite.pop("ledger")
    assert base == sqlite


@pytest.mark.k8s
def test_service_account_runs_the_lease_and_the_ledger_and_kubectl_lists_them(k8s_cluster, unique):
    cp = k8s_cluster
    kubectl("apply", "--server-side", "-k", "deploy/crds", kubeconfig=cp.kubeconfig)
    cp.wait_crds_established()
    objs = render("deploy/base")
    rbac = [o for o in objs if o["kind"] in ("Namespace", "ServiceAccount", "Role", "RoleBinding")]
    subprocess.run([str(bins.binary("kubectl")), "--kubeconfig", str(cp.kubeconfig), "apply", "-f", "-"],
                   input=yaml.safe_dump_all(rbac), text=True, check=True, capture_output=True, timeout=60)
    token = kubectl("-n", "vigil", "create", "token", "vigil-remediator", "--duration=1h",
                    kubeconfig=cp.kubeconfig).stdout.strip()
    sa = _as_service_account(cp, token)

    elector = LeaseElector(sa, LeaderElection(name=f"lease-{unique}", namespace="vigil"), f"pod-{unique}")
    assert elector.step() and elector.is_leader()
    ledger = KubernetesLedger(IncidentsAPI(sa, "vigil"), watch=False)
    ledger.set_token(elector.token)
    now = dt.datetime.now(dt.UTC)
    a = alert(xid_labels(f"gpu-{unique}"), starts_at=now)
    assert ledger.record(parse(json.dumps(body(a)).encode()).alerts, now).new == 1
    inc = next(i for i in ledger.due(now) if i.labels["node"] == f"gpu-{unique}")
    [aid] = ledger.save_decision(inc.id, Decision("act", rule="gpu-xid", actions=(
        PlannedAction("cordon_node", f"gpu-{unique}", {"node": f"gpu-{unique}"}),)), now)
    assert ledger.claim_action(aid, now) is not None
    ledger.set_state("paused", "true")
    ledger.set_state("paused", None)
    assert ledger.sweep(now) == 0

    rows = [line.split() for line in kubectl("get", "vigilincidents", "-n", "vigil",
                                             kubeconfig=cp.kubeconfig).stdout.splitlines()]
    assert rows[0] == ["NAME", "ALERT", "TARGET", "STATUS", "RULE", "AGE"]
    assert ["GpuXidCritical", f"gpu-{unique}", "acting", "gpu-xid"] in [r[1:5] for r in rows[1:]]

    coord = client.CoordinationV1Api(sa)
    with pytest.raises(client.ApiException) as err:  # the Role is namespaced: nowhere else
        coord.create_namespaced_lease("default", {"metadata": {"name": f"x-{unique}"}, "spec": {}})
    assert err.value.status == 403
    with pytest.raises(client.ApiException) as err:
        client.CustomObjectsApi(sa).list_namespaced_custom_object("vigil.io", "v1alpha1", "default", "vigilincidents")
    assert err.value.status == 403
    with pytest.raises(client.ApiException) as err:
        coord.delete_namespaced_lease(f"lease-{unique}", "vigil")
    assert err.value.status == 403
    assert elector.release()
