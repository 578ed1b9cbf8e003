"""Read one GPU through NVML into samples. A read that fails is omitted, never exported as 0."""

from __future__ import annotations

import ctypes
import uuid as uuid_mod
from typing import Any, NamedTuple

from exporters.gpu.errors import DriverFailure, ErrorCounts, GpuLost, Outcome, classify
from exporters.gpu.metrics import CLOCK_EVENT_REASONS, NVLINK_ERRORS
from exporters.gpu.session import Device


class Sample(NamedTuple):
    name: str
    labels: tuple[str, ...]
    value: float


_MISSING = object()


class _Reader:
    def __init__(self, nvml: Any, dev: Device, errors: ErrorCounts) -> None:
        self.nvml, self.dev, self.errors = nvml, dev, errors
        self.base = (str(dev.index), dev.uuid)
        self.out: list[Sample] = []

    def call(self, fn: str, *args: Any, key: tuple | None = None) -> Any:
        """`key`: how an unsupported call is remembered, where the arguments are fresh buffers."""
        key = key or (fn, args)
        if key in self.dev.unsupported:
            return _MISSING
        try:
            return getattr(self.nvml, fn)(self.dev.handle, *args)
        except self.nvml.NVMLError as err:
            label, outcome = classify(err)
            self.errors.inc(label)
            if outcome is Outcome.GPU_LOST:
                raise GpuLost(label) from err
            if outcome is Outcome.DRIVER:
                raise DriverFailure(label) from err
            if outcome is Outcome.ABSENT:
                self.dev.unsupported.add(key)  # capability gaps do not change until re-init
            return _MISSING

    def add(self, name: str, value: Any, *extra: str) -> None:
        if value is not _MISSING:
            self.out.append(Sample(name, self.base + extra, float(value)))


def _field_value(nvml: Any, v: Any) -> Any:
    if v.nvmlReturn != nvml.NVML_SUCCESS:
        return _MISSING
    attr = {
        nvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
        nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
    }.get(v.valueType)
    return getattr(v.value, attr) if attr else _MISSING


def read_device(nvml: Any, dev: Device, errors: ErrorCounts) -> list[Sample]:
    """All per-GPU samples of one device; raises GpuLost or DriverFailure."""
    r = _Reader(nvml, dev, errors)

    util = r.call("nvmlDeviceGetUtilizationRates")
    if util is not _MISSING:
        r.add("gpu_utilization_ratio", util.gpu / 100)
        r.add("gpu_memory_utilization_ratio", util.memory / 100)
    for name, fn in (("gpu_encoder_utilization_ratio", "nvmlDeviceGetEncoderUtilization"),
                     ("gpu_decoder_utilization_ratio", "nvmlDeviceGetDecoderUtilization")):
        v = r.call(fn)
        r.add(name, v[0] / 100 if v is not _MISSING else _MISSING)

    mem = r.call("nvmlDeviceGetMemoryInfo", nvml.nvmlMemory_v2)
    if mem is _MISSING:
        mem = r.call("nvmlDeviceGetMemoryInfo")  # drivers older than the _v2 struct
    if mem is not _MISSING:
        r.add("gpu_memory_used_bytes", mem.used)
        r.add("gpu_memory_free_bytes", mem.free)
        r.add("gpu_memory_total_bytes", mem.total)
        if hasattr(mem, "reserved"):
            r.add("gpu_memory_reserved_bytes", mem.reserved)

    for name, clock in (("gpu_sm_clock_hertz", nvml.NVML_CLOCK_SM),
                        ("gpu_memory_clock_hertz", nvml.NVML_CLOCK_MEM)):
        v = r.call("nvmlDeviceGetClockInfo", clock)
        r.add(name, v * 1e6 if v is not _MISSING else _MISSING)
    r.add("gpu_temperature_celsius", r.call("nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU))

    fields = r.call("nvmlDeviceGetFieldValues",  # a tuple, so the call can be remembered as unsupported
                    (nvml.NVML_FI_DEV_MEMORY_TEMP, nvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION))
    if fields is not _MISSING:
        r.add("gpu_memory_temperature_celsius", _field_value(nvml, fields[0]))
        r.add("gpu_recovery_action", _field_value(nvml, fields[1]))

    for name, fn in (("gpu_power_usage_watts", "nvmlDeviceGetPowerUsage"),
                     ("gpu_power_limit_watts", "nvmlDeviceGetEnforcedPowerLimit"),
                     ("gpu_energy_consumption_joules_total", "nvmlDeviceGetTotalEnergyConsumption")):
        v = r.call(fn)  # milliwatts, millijoules
        r.add(name, v / 1000 if v is not _MISSING else _MISSING)

    r.add("gpu_pcie_replay_errors_total", r.call("nvmlDeviceGetPcieReplayCounter"))
    r.add("gpu_pcie_link_generation", r.call("nvmlDeviceGetCurrPcieLinkGeneration"))
    r.add("gpu_pcie_link_width", r.call("nvmlDeviceGetCurrPcieLinkWidth"))

    r.add("gpu_ecc_corrected_errors_total", r.call(
        "nvmlDeviceGetTotalEccErrors", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, nvml.NVML_VOLATILE_ECC))
    r.add("gpu_ecc_uncorrected_errors_total", r.call(
        "nvmlDeviceGetTotalEccErrors", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC))

    rows = r.call("nvmlDeviceGetRemappedRows")
    if rows is not _MISSING:
        corrected, uncorrected, pending, failed = rows
        r.add("gpu_remapped_rows_total", corrected, "correctable")
        r.add("gpu_remapped_rows_total", uncorrected, "uncorrectable")
        r.add("gpu_row_remap_pending", 1 if pending else 0)
        r.add("gpu_row_remap_failed", 1 if failed else 0)

    for cause, const in (("single_bit", "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS"),
                         ("double_bit", "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR")):
        pages = r.call("nvmlDeviceGetRetiredPages", getattr(nvml, const))
        r.add("gpu_retired_pages_total", len(pages) if pages is not _MISSING else _MISSING, cause)
    pending = r.call("nvmlDeviceGetRetiredPagesPendingStatus")
    r.add("gpu_retired_pages_pending", 1 if pending is not _MISSING and pending else
          (0 if pending is not _MISSING else _MISSING))

    mask = r.call("nvmlDeviceGetCurrentClocksEventReasons")
    if mask is not _MISSING:
        for reason, const in CLOCK_EVENT_REASONS.items():
            r.add("gpu_clock_event_active", 1 if mask & getattr(nvml, const) else 0, reason)

    r.add("gpu_performance_state", r.call("nvmlDeviceGetPerformanceState"))
    _fabric(r, nvml)
    return r.out


def _fabric(r: _Reader, nvml: Any) -> None:
    """The GPU's NVLink fabric partition, once the fabric manager registered it: `clusterUuid` and
    `cliqueId` (GPU Feature Discovery's `nvidia.com/gpu.clique` is `<clusterUuid>.<cliqueId>`).
    GPUs without an NVLink fabric answer NOT_SUPPORTED: no series."""
    info = nvml.c_nvmlGpuFabricInfo_t()
    fn = "nvmlDeviceGetGpuFabricInfo"
    if r.call(fn, ctypes.byref(info), key=(fn,)) is _MISSING:
        return
    if info.state != nvml.NVML_GPU_FABRIC_STATE_COMPLETED or info.status != nvml.NVML_SUCCESS:
        return
    cluster = str(uuid_mod.UUID(bytes=bytes(info.clusterUuid)))
    r.add("gpu_fabric_info", 1, cluster, str(info.cliqueId))


def read_nvlink(nvml: Any, dev: Device, errors: ErrorCounts) -> list[Sample]:
    """NVLink error counters: 4 calls per active link, 72 on an H100, so refreshed on their own
    (slower) cadence; see Sampler."""
    r = _Reader(nvml, dev, errors)
    for link in dev.nvlinks:
        for error, const in NVLINK_ERRORS.items():
            v = r.call("nvmlDeviceGetNvLinkErrorCounter", link, getattr(nvml, const))
            r.add("gpu_nvlink_errors_total", v, str(link), error)
    return r.out
