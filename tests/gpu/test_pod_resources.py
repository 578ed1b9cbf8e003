"""Pod attribution through the kubelet's pod-resources API: a real gRPC server on a unix socket
with the vendored v1 proto; two pods on two GPUs, MIG slices, shared replicas, a pod that goes
away; gpu_allocation_info follows, and no per-GPU series gets a pod label."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exporters.gpu.attribution import parent_gpu
from exporters.gpu.exporter import PodResourcesConfig
from exporters.gpu.simulated import SimulatedNVML

from .conftest import make_exporter, one, pick, scrape, wait_for
from .kubelet import FakeKubelet, pod

UUID = "GPU-5a1e0000-0000-4000-8000-{:012x}".format
GPU = "nvidia.com/gpu"


@pytest.fixture
def kubelet(tmp_path):
    made = []

    def start(**kw):
        k = FakeKubelet(tmp_path / "kubelet.sock", **kw)
        made.append(k)
        return k

    yield start
    for k in made:
        k.stop()


def allocations(exp) -> set[tuple[str, str, str, str, str]]:
    return {tuple(dict(lbl)[k] for k in ("gpu", "uuid", "namespace", "pod", "container"))
            for lbl in pick(scrape(exp), "gpu_allocation_info")}


def test_allocations_follow_the_kubelet(kubelet):
    k = kubelet(allocatable=[(GPU, [UUID(i) for i in range(6)]), ("nvidia.com/mig-1g.10gb",
                                                                  [SimulatedNVML.mig_uuid(7, n) for n in range(2)])])
    k.set_pods(
        pod("ml", "llm-0", {"server": [(GPU, [UUID(0)])], "sidecar": [("cpu", ["0"])]}),
        pod("ml", "llm-1", {"server": [(GPU, [UUID(1)])]}),
        pod("batch", "mig-job", {"main": [("nvidia.com/mig-1g.10gb", [SimulatedNVML.mig_uuid(7, 1)])]}),
        pod("batch", "old-mig", {"main": [("nvidia.com/mig-1g.10gb", [f"MIG-{UUID(6)}/1/0"])]}),
        pod("dev", "shared", {"a": [(GPU, [f"{UUID(5)}::0", f"{UUID(5)}::3"])]}),
        pod("other", "nic", {"main": [("example.com/nic", ["eth1"])]}),
    )
    sim = SimulatedNVML(8, mig={7: 2})
    exp = make_exporter(sim, pod_resources=PodResourcesConfig(str(k.socket), interval=0.1))
    try:
        assert wait_for(lambda: one(scrape(exp), "gpu_exporter_pod_resources_up") == 1)
        assert allocations(exp) == {
            ("0", UUID(0), "ml", "llm-0", "server"), ("1", UUID(1), "ml", "llm-1", "server"),
            ("7", UUID(7), "batch", "mig-job", "main"),  # MIG UUID -> parent through NVML
            ("6", UUID(6), "batch", "old-mig", "main"),  # MIG-GPU-<uuid>/gi/ci
            ("5", UUID(5), "dev", "shared", "a"),  # two replicas of one GPU: one series
        }
        s = scrape(exp)
        assert one(s, "gpu_exporter_pod_resources_allocatable_devices", resource=GPU) == 6
        assert one(s, "gpu_exporter_pod_resources_allocatable_devices", resource="nvidia.com/mig-1g.10gb") == 2
        for (name, labels) in s:
            if name != "gpu_allocation_info":
                assert "pod" not in dict(labels), name
        k.set_pods(pod("ml", "llm-1", {"server": [(GPU, [UUID(1)])]}))  # the others go away
        assert wait_for(lambda: allocations(exp) == {("1", UUID(1), "ml", "llm-1", "server")})
        exp.attribution.stop()  # the refresher is the only caller of the kubelet
        exp.attribution.join(10)
        calls = k.list_calls
        for _ in range(5):
            assert allocations(exp) == {("1", UUID(1), "ml", "llm-1", "server")}
        assert k.list_calls == calls, "scrapes never call the kubelet"
    finally:
        exp.stop()


def test_a_kubelet_without_get_allocatable_and_one_that_goes_away(kubelet):
    k = kubelet(allocatable=None)  # GetAllocatableResources answers UNIMPLEMENTED
    k.set_pods(pod("ml", "llm-0", {"server": [(GPU, [UUID(2)])]}))
    exp = make_exporter(SimulatedNVML(8), pod_resources=PodResourcesConfig(str(k.socket), interval=0.1,
                                                                           timeout=1.0))
    try:
        assert wait_for(lambda: allocations(exp) == {("2", UUID(2), "ml", "llm-0", "server")})
        assert not pick(scrape(exp), "gpu_exporter_pod_resources_allocatable_devices")
        k.stop()
        assert wait_for(lambda: one(scrape(exp), "gpu_exporter_pod_resources_up") == 0, timeout=10)
        assert allocations(exp) == set(), "no stale attribution"
        assert one(scrape(exp), "gpu_exporter_nvml_up") == 1
    finally:
        exp.stop()


@pytest.mark.parametrize(("device_id", "want"), [
    ("GPU-aaaa", "GPU-aaaa"), ("GPU-aaaa::2", "GPU-aaaa"), ("MIG-GPU-aaaa/1/0", "GPU-aaaa"),
    ("MIG-bbbb", "GPU-parent"), ("nvidia3", "GPU-three"), ("nvidia3/gi1", "GPU-three"), ("nvidia3/vgpu2", "GPU-three"),
    ("nvidia9", None), ("something-else", None),
])
def test_device_ids_map_to_the_parent_gpu(device_id, want):
    got = parent_gpu(device_id, mig=lambda u: "GPU-parent" if u == "MIG-bbbb" else None,
                     by_index={"3": "GPU-three"})
    assert got == want


def test_the_committed_stubs_are_what_the_pinned_generator_makes():
    r = subprocess.run([sys.executable, "scripts/podresources_stubs.py", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("with_socket", [False, True])
def test_grpc_and_protobuf_are_loaded_only_with_pod_resources(tmp_path, with_socket):
    """Without --pod-resources-socket the exporter never imports grpc or protobuf (their ~10 MiB of
    resident memory); with it, the client is there and its errors are the exporter's own."""
    pod_resources = f"PodResourcesConfig({str(tmp_path / 'absent.sock')!r}, 10.0)" if with_socket else "None"
    code = f"""
import sys
import exporters.gpu.cli
from exporters.gpu.exporter import PodResourcesConfig, build
from exporters.gpu.simulated import SimulatedNVML
exp = build(SimulatedNVML(2), pod_resources={pod_resources})
loaded = sorted(m for m in sys.modules if m == "grpc" or m.startswith(("grpc.", "google.protobuf")))
print("loaded" if loaded else "none")
if exp.attribution is not None:
    exp.attribution.refresh()
    print("up", exp.attribution.up)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == (["loaded", "up", "False"] if with_socket else ["none"])
