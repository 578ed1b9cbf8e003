"""NVLink fabric identity: the real collector reads nvmlDeviceGetGpuFabricInfo from the simulated
NVML of a node in an NVL72-style partition and exports gpu_fabric_info{cluster_uuid, clique_id},
the pieces of GPU Feature Discovery's nvidia.com/gpu.clique label; GPUs without a fabric export none."""

from __future__ import annotations

import ctypes

import pynvml
import pytest

from exporters.gpu.cli import fabric_arg
from exporters.gpu.simulated import SimulatedNVML

from .conftest import make_exporter, pick, scrape

CLUSTER = "7f0c3a52-5d3e-4c1b-9a0e-1f2e3d4c5b6a"


def test_a_gpu_of_an_nvlink_partition_exports_its_cluster_and_clique():
    exp = make_exporter(SimulatedNVML(4, fabric=(CLUSTER, 3)))
    try:
        found = pick(scrape(exp), "gpu_fabric_info")
    finally:
        exp.watcher.stop()
    assert len(found) == 4 and set(found.values()) == {1.0}
    for labels in found:
        got = dict(labels)
        assert (got["cluster_uuid"], got["clique_id"]) == (CLUSTER, "3")
    assert {dict(labels)["gpu"] for labels in found} == {"0", "1", "2", "3"}


def test_a_gpu_without_a_fabric_exports_no_fabric_series_and_asks_once():
    sim = SimulatedNVML(2)
    calls = []
    real = sim.nvmlDeviceGetGpuFabricInfo

    def counted(device, gpuFabricInfo):
        calls.append(1)
        return real(device, gpuFabricInfo)
    sim.nvmlDeviceGetGpuFabricInfo = counted
    exp = make_exporter(sim)
    try:
        for _ in range(3):
            assert not pick(scrape(exp), "gpu_fabric_info")
    finally:
        exp.watcher.stop()
    assert len(calls) == 2, "NOT_SUPPORTED is remembered per GPU, as other capability gaps"


def test_the_simulated_call_fills_the_real_struct_by_reference():
    sim = SimulatedNVML(1, fabric=(CLUSTER, 7))
    sim.nvmlInit()
    info = pynvml.c_nvmlGpuFabricInfo_t()
    assert sim.nvmlDeviceGetGpuFabricInfo(sim.nvmlDeviceGetHandleByIndex(0), ctypes.byref(info)) == 0
    assert info.cliqueId == 7 and info.state == pynvml.NVML_GPU_FABRIC_STATE_COMPLETED
    assert bytes(info.clusterUuid).hex() == CLUSTER.replace("-", "")


def test_the_cli_takes_the_clique_label_form():
    assert fabric_arg(f"{CLUSTER}.3") == (CLUSTER, 3)
    with pytest.raises(Exception, match="clusterUuid"):
        fabric_arg("rack-1")
