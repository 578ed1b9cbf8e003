"""The Kubernetes semantics the remediator relies on, pinned down against the real control plane."""

from __future__ import annotations

import datetime

import kubernetes
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.k8s.controlplane import add_gpu_nodes, wait_until

pytestmark = pytest.mark.k8s


def _namespace(api, name: str) -> str:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def _deployment(name: str, replicas: int, **pod_spec) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}],
                                       "terminationGracePeriodSeconds": 0, **pod_spec}}},
    }


def _running(core, ns: str, selector: str) -> list:
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def test_python_client_matches_the_server_minor(k8s_api):
    info = client.VersionApi(k8s_api.api_client()).get_code()
    assert info.git_version == "v1.34.4"
    assert kubernetes.__version__.split(".")[0] == info.minor.rstrip("+")


def test_token_auth_and_rbac(k8s_api):
    import requests

    r = requests.get(f"{k8s_api.server}/api/v1/nodes", verify=str(k8s_api.ca), timeout=10)
    assert r.status_code in (401, 403)  # anonymous: no access
    r = requests.get(f"{k8s_api.server}/api/v1/nodes", verify=str(k8s_api.ca), timeout=10,
                     headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_cordon_is_an_object_patch(k8s_api, unique):
    api = k8s_api.api_client()
    core = client.CoreV1Api(api)
    name = f"cordon-{unique}"
    add_gpu_nodes(api, [name])
    core.patch_node(name, {"spec": {"unschedulable": True}})
    node = core.read_node(name)
    assert node.spec.unschedulable is True
    assert node.status.capacity["nvidia.com/gpu"] == "8"


def test_lease_can_be_created_and_renewed(k8s_api, unique):
    coord = client.CoordinationV1Api(k8s_api.api_client())
    now = datetime.datetime.now(datetime.UTC)
    lease = coord.create_namespaced_lease("default", {
        "metadata": {"name": f"vigil-leader-{unique}"},
        "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15, "acquireTime": now, "renewTime": now},
    })
    renewed = now + datetime.timedelta(seconds=5)
    lease.spec.renew_time = renewed
    updated = coord.replace_namespaced_lease(lease.metadata.name, "default", lease)
    assert updated.spec.renew_time == renewed
    assert int(updated.metadata.resource_version) > int(lease.metadata.resource_version)
    lease.spec.holder_identity = "replica-b"  # a stale write loses: optimistic concurrency
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease(lease.metadata.name, "default", lease)
    assert err.value.status == 409


def test_httproute_weights_can_be_created_and_patched(k8s_api, unique):
    objs = client.CustomObjectsApi(k8s_api.api_client())
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": f"inference-{unique}"},
        "spec": {"parentRefs": [{"name": "gw"}],
                 "rules": [{"backendRefs": [{"name": "pool-a", "port": 80, "weight": 50},
                                            {"name": "pool-b", "port": 80, "weight": 50}]}]},
    }
    objs.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "httproutes", route)
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 0
    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 100
    objs.patch_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "httproutes",
                                        route["metadata"]["name"], {"spec": route["spec"]})
    got = objs.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "httproutes",
                                            route["metadata"]["name"])
    assert [b["weight"] for b in got["spec"]["rules"][0]["backendRefs"]] == [0, 100]
    with pytest.raises(ApiException) as err:  # the CRD's schema validation is real
        objs.patch_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "httproutes",
                                            route["metadata"]["name"],
                                            {"spec": {"rules": [{"backendRefs": [{"name": "x", "weight": -1}]}]}})
    assert err.value.status == 422


def test_deployment_pods_run_on_kwok_nodes_and_a_deleted_pod_is_replaced(k8s_cluster, unique):
    api = k8s_cluster.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = _namespace(api, f"deploy-{unique}")
    nodes = [f"run-{unique}-{i}" for i in range(2)]
    add_gpu_nodes(api, nodes)
    apps.create_namespaced_deployment(ns, _deployment("web", 3, nodeSelector={"kubernetes.io/hostname": nodes[0]}))
    pods = wait_until(lambda: len(_running(core, ns, "app=web")) == 3 and _running(core, ns, "app=web"), 60,
                      what="3 running pods")
    for p in pods:
        assert p.status.pod_ip and p.spec.node_name
        assert core.read_node(p.spec.node_name).metadata.annotations["kwok.x-k8s.io/node"] == "fake"
    victim = pods[0].metadata.name
    core.delete_namespaced_pod(victim, ns)
    wait_until(lambda: victim not in {p.metadata.name for p in core.list_namespaced_pod(ns).items}, 60,
               what="deleted pod to go away")
    replaced = wait_until(lambda: len(_running(core, ns, "app=web")) == 3 and _running(core, ns, "app=web"), 60,
                          what="replacement")
    assert victim not in {p.metadata.name for p in replaced}


def test_cordoned_node_gets_no_new_pods(k8s_cluster, unique):
    api = k8s_cluster.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = _namespace(api, f"cordon-{unique}")
    cordoned, open_ = f"cordoned-{unique}", f"open-{unique}"
    add_gpu_nodes(api, [cordoned, open_], pool=f"pool-{unique}")
    wait_until(lambda: all(any(c.type == "Ready" and c.status == "True" for c in core.read_node(n).status.conditions
                               or []) for n in (cordoned, open_)), 60, what="nodes Ready")
    core.patch_node(cordoned, {"spec": {"unschedulable": True}})
    apps.create_namespaced_deployment(ns, _deployment("app", 6, nodeSelector={"vigil.io/pool": f"pool-{unique}"}))
    pods = wait_until(lambda: len(_running(core, ns, "app=app")) == 6 and _running(core, ns, "app=app"), 60,
                      what="6 running pods")
    assert {p.spec.node_name for p in pods} == {open_}
    # Only the cordoned node is eligible: the pod stays Pending, Unschedulable.
    core.patch_node(open_, {"spec": {"unschedulable": True}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "late"}, "spec": {
        "nodeSelector": {"vigil.io/pool": f"pool-{unique}"},
        "containers": [{"name": "c", "image": "example.invalid/app:1"}]}})

    def unschedulable():
        pod = core.read_namespaced_pod("late", ns)
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in pod.status.conditions or [])

    wait_until(unschedulable, 60, what="Unschedulable condition")
    assert core.read_namespaced_pod("late", ns).spec.node_name is None


def _evict(core, name: str, ns: str):
    return core.create_namespaced_pod_eviction(name, ns, {"apiVersion": "policy/v1", "kind": "Eviction",
                                                          "metadata": {"name": name, "namespace": ns}})


def test_eviction_answers_429_under_a_pdb_and_succeeds_otherwise(k8s_cluster, unique):
    api = k8s_cluster.api_client()
    core, apps, policy = client.CoreV1Api(api), client.AppsV1Api(api), client.PolicyV1Api(api)
    ns = _namespace(api, f"evict-{unique}")
    add_gpu_nodes(api, [f"evict-{unique}"], pool=f"pool-{unique}")
    apps.create_namespaced_deployment(ns, _deployment("model", 2, nodeSelector={"vigil.io/pool": f"pool-{unique}"}))
    pods = wait_until(lambda: len(_running(core, ns, "app=model")) == 2 and _running(core, ns, "app=model"), 60,
                      what="2 running pods")
    policy.create_namespaced_pod_disruption_budget(ns, {
        "metadata": {"name": "model"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "model"}}}})

    def observed(allowed: int):
        def check():
            pdb = policy.read_namespaced_pod_disruption_budget("model", ns)
            return (pdb.status and pdb.status.observed_generation == pdb.metadata.generation
                    and pdb.status.current_healthy == 2 and pdb.status.disruptions_allowed == allowed)
        return check

    wait_until(observed(0), 60, what="PDB status from the disruption controller")
    with pytest.raises(ApiException) as err:
        _evict(core, pods[0].metadata.name, ns)
    assert err.value.status == 429
    assert "disruption budget" in err.value.body.lower()

    policy.patch_namespaced_pod_disruption_budget("model", ns, {"spec": {"minAvailable": 1}})
    wait_until(observed(1), 60, what="PDB to allow one disruption")
    _evict(core, pods[0].metadata.name, ns)
    wait_until(lambda: pods[0].metadata.name not in {p.metadata.name for p in core.list_namespaced_pod(ns).items},
               60, what="evicted pod to be deleted (kwok pod-delete stage)")
    wait_until(lambda: len(_running(core, ns, "app=model")) == 2, 60, what="the Deployment to replace it")
