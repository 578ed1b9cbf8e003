"""The simulated backend must have pynvml's shape, so the collector cannot tell them apart."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pynvml
import pytest

from exporters.gpu.simulated import SimulatedNVML

SIM_FUNCS = sorted(n for n in vars(SimulatedNVML) if n.startswith("nvml"))
COLLECTOR_SOURCES = [Path("exporters/gpu") / f for f in ("device.py", "session.py", "xid.py", "sampler.py")]


@pytest.mark.parametrize("name", SIM_FUNCS)
def test_every_simulated_function_has_pynvml_signature(name):
    real = getattr(pynvml, name)
    sim = getattr(SimulatedNVML(1), name)
    real_params = list(inspect.signature(real).parameters)
    sim_params = list(inspect.signature(sim).parameters)
    assert sim_params == real_params, f"{name}{real_params} vs simulated {sim_params}"


def test_every_nvml_call_of_the_collector_is_simulated():
    called = set()
    for path in COLLECTOR_SOURCES:
        called |= set(re.findall(r"\bnvml(?:Device|System|Event|Init|Shutdown)\w*", path.read_text()))
    called = {c for c in called if callable(getattr(pynvml, c, None))}
    assert called, "the collector calls NVML"
    missing = called - set(SIM_FUNCS)
    assert not missing, f"collector calls NVML functions the simulation lacks: {missing}"


def test_errors_are_pynvml_classes_with_real_codes():
    sim = SimulatedNVML(2)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()
    sim.nvmlInit()
    sim.inject(1, "lost")
    handle = sim.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost) as err:
        sim.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    assert err.value.value == pynvml.NVML_ERROR_GPU_IS_LOST == 15
    es = sim.nvmlEventSetCreate()
    with pytest.raises(pynvml.NVMLError_Timeout):
        sim.nvmlEventSetWait(es, 1)


def test_structures_are_pynvml_structures():
    sim = SimulatedNVML(1)
    sim.nvmlInit()
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(h, pynvml.c_nvmlDevice_t)
    assert isinstance(sim.nvmlDeviceGetMemoryInfo(h, pynvml.nvmlMemory_v2), pynvml.c_nvmlMemory_v2_t)
    assert isinstance(sim.nvmlDeviceGetUtilizationRates(h), pynvml.c_nvmlUtilization_t)
    fv = sim.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP, 99999])
    assert fv[0].nvmlReturn == pynvml.NVML_SUCCESS and fv[1].nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert sim.NVMLError is pynvml.NVMLError  # constants and classes come from pynvml itself


def test_unimplemented_functions_fail_loudly():
    with pytest.raises(AttributeError):
        SimulatedNVML(1).nvmlDeviceGetPcieThroughput  # noqa: B018


def test_values_are_deterministic_per_gpu_and_time():
    t = [500.0]
    a, b = SimulatedNVML(4, clock=lambda: t[0]), SimulatedNVML(4, clock=lambda: t[0])
    for s in (a, b):
        s.nvmlInit()
    ha, hb = a.nvmlDeviceGetHandleByIndex(2), b.nvmlDeviceGetHandleByIndex(2)
    assert a.nvmlDeviceGetPowerUsage(ha) == b.nvmlDeviceGetPowerUsage(hb)
    other = a.nvmlDeviceGetPowerUsage(a.nvmlDeviceGetHandleByIndex(3))
    assert other != a.nvmlDeviceGetPowerUsage(ha)
