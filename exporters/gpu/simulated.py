"""A simulated NVML with the shape of `pynvml`, so the real collector code runs without a GPU.

Function names, arguments, return structures and `NVMLError` codes are those of nvidia-ml-py;
constants, structures and error classes are taken from `pynvml` itself so they cannot drift.
Values are deterministic functions of (GPU index, seconds since start) for an H100-class GPU.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
import types
import uuid as uuid_mod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

from exporters.gpu.simulated_kmsg import SimulatedKernelLog

MiB = 1024 * 1024
H100_MEMORY_TOTAL = 80 * 1024 * MiB
H100_MEMORY_RESERVED = 528 * MiB
H100_POWER_LIMIT_MW = 700_000
H100_NVLINKS = 18

FAULTS = (
    "xid",
    "lost",
    "overtemp",
    "ecc_uncorrected",
    "row_remap_failure",
    "row_remap_pending",
    "nvlink_errors",
    "thermal_slowdown",
    "power_brake",
    "sxid",
    "clear",  # a successful GPU reset (as "reset"): the GPU comes back clean
    "reset",
    "reboot",  # the whole node: every GPU clean, and a new boot ID
)
# PCI buses of an HGX H100's eight GPUs; GPU 8 and up sit in the next PCI domain.
_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)

# XIDs after which the driver asks for a GPU reset or a node reboot (gpu_recovery_action).
_RECOVERY_BY_XID = {
    48: pynvml.NVML_GPU_RECOVERY_ACTION_GPU_RESET,
    64: pynvml.NVML_GPU_RECOVERY_ACTION_GPU_RESET,
    94: pynvml.NVML_GPU_RECOVERY_ACTION_GPU_RESET,
    95: pynvml.NVML_GPU_RECOVERY_ACTION_GPU_RESET,
    79: pynvml.NVML_GPU_RECOVERY_ACTION_NODE_REBOOT,
    119: pynvml.NVML_GPU_RECOVERY_ACTION_NODE_REBOOT,
    120: pynvml.NVML_GPU_RECOVERY_ACTION_NODE_REBOOT,
}


class FaultError(ValueError):
    """A fault request that cannot be applied; the message is safe to show to a client."""


@dataclass
class _Gpu:
    index: int
    struct: Any  # keeps the handle's target alive
    handle: Any
    faults: set[str] = field(default_factory=set)
    xids: list[int] = field(default_factory=list)
    ecc_uncorrected: int = 0
    nvlink_errors: int = 0
    recovery_action: int = pynvml.NVML_GPU_RECOVERY_ACTION_NONE


@dataclass
class _EventSet:
    cond: threading.Condition = field(default_factory=threading.Condition)
    devices: set[int] = field(default_factory=set)
    queue: deque = field(default_factory=deque)


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


def _addr(ptr: Any) -> int:
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


class SimulatedNVML:
    """Drop-in for the `pynvml` module: `SimulatedNVML(8).nvmlDeviceGetCount()` and so on.

    Attributes that are not NVML functions (constants, structures, `NVMLError` and its
    subclasses) resolve to `pynvml`'s own, so `nvml.NVMLError_GpuIsLost` is the real class.
    """

    def __init__(
        self,
        gpus: int = 8,
        *,
        clock: Callable[[], float] = time.monotonic,
        retired_pages_supported: bool = False,
        kernel_log: SimulatedKernelLog | None = None,
        mig: dict[int, int] | None = None,
        fabric: tuple[str, int] | None = None,
    ) -> None:
        self._clock = clock
        self.fabric = fabric  # (clusterUuid, cliqueId) of this node's NVLink partition; None: no NVLink fabric
        self.kernel_log = kernel_log  # where injected XIDs and SXIDs are also logged, as the driver does
        self._mig: dict[bytes, tuple[Any, Any]] = {}  # MIG UUID -> (its struct, its handle)
        self._mig_parent: dict[int, _Gpu] = {}  # MIG handle address -> parent GPU
        self._t0 = clock()
        self._lock = threading.Lock()
        self._initialized = 0
        self._driver_error: int | None = None
        self._retired_pages_supported = retired_pages_supported
        self._gpus: list[_Gpu] = []
        self._by_addr: dict[int, _Gpu] = {}
        self._by_id: dict[int, _Gpu] = {}
        for i in range(gpus):
            struct = pynvml.struct_c_nvmlDevice_t()
            gpu = _Gpu(index=i, struct=struct, handle=pynvml.c_nvmlDevice_t(struct))
            self._gpus.append(gpu)
            self._by_addr[_addr(gpu.handle)] = gpu
            self._by_id[id(gpu.handle)] = gpu  # fast path for the handle objects we hand out
        for index, count in (mig or {}).items():
            for n in range(count):
                struct = pynvml.struct_c_nvmlDevice_t()
                handle = pynvml.c_nvmlDevice_t(struct)
                self._mig[self.mig_uuid(index, n).encode()] = (struct, handle)
                self._mig_parent[_addr(handle)] = self._gpus[index]
        self._event_sets: dict[int, tuple[Any, _EventSet]] = {}
        self.hang: threading.Event | None = None  # tests: set to make every device call block
        self.boot_id = str(uuid_mod.uuid4())  # the simulated node's; its reboot changes it

    def __getattr__(self, name: str) -> Any:
        attr = getattr(pynvml, name)
        if isinstance(attr, types.FunctionType):
            raise AttributeError(f"SimulatedNVML does not implement {name!r}")
        return attr

    # ---- fault injection (not part of the pynvml shape) ----------------------------------

    @staticmethod
    def mig_uuid(gpu: int, instance: int) -> str:
        return f"MIG-6b2f0000-0000-4000-8000-{gpu:06x}{instance:06x}"

    def inject_sxid(self, switch: int, sxid: int) -> None:
        """An NVSwitch error: only the kernel log sees those (NVML has no SXID event)."""
        if not isinstance(sxid, int) or isinstance(sxid, bool) or not 0 < sxid < 1_000_000:
            raise FaultError("fault 'sxid' needs an integer 'sxid' between 1 and 999999")
        if self.kernel_log is None:
            raise FaultError("fault 'sxid' needs the simulated kernel log (the exporter's --kernel-log)")
        try:
            self.kernel_log.sxid(switch=switch, sxid=sxid)
        except ValueError as exc:
            raise FaultError(str(exc)) from exc

    def inject(self, gpu: int, fault: str, xid: int | None = None) -> None:
        """Apply a fault; XIDs go out through the event sets exactly like the driver's, and to the
        simulated kernel log if there is one."""
        if fault == "sxid":
            raise FaultError("fault 'sxid' takes 'nvswitch' and 'sxid', not 'gpu'")
        if fault == "reboot":
            self.reboot()
            return
        if fault not in FAULTS:
            raise FaultError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if not 0 <= gpu < len(self._gpus):
            raise FaultError(f"gpu {gpu} does not exist; this node has {len(self._gpus)} GPUs")
        g = self._gpus[gpu]
        with self._lock:
            if fault in ("clear", "reset"):
                g.faults.clear()
                g.recovery_action = pynvml.NVML_GPU_RECOVERY_ACTION_NONE
                return
            if fault == "xid":
                if not isinstance(xid, int) or isinstance(xid, bool) or not 0 < xid < 1000:
                    raise FaultError("fault 'xid' needs an integer 'xid' between 1 and 999")
                g.xids.append(xid)
                g.recovery_action = max(g.recovery_action, _RECOVERY_BY_XID.get(xid, 0))
            elif fault == "ecc_uncorrected":
                g.ecc_uncorrected += 1
                g.faults.add(fault)
            elif fault == "nvlink_errors":
                g.nvlink_errors += 10
                g.faults.add(fault)
            else:
                g.faults.add(fault)
        if fault == "xid":
            self._deliver(g, xid)
            if self.kernel_log is not None:
                self.kernel_log.xid(pci=self._pci_text(g), uuid=self._uuid(g), serial=self._serial(g), xid=xid)

    def reboot(self) -> None:
        """The node reboots: every GPU comes back clean (no faults, no XID history), under a new boot ID."""
        with self._lock:
            for g in self._gpus:
                g.faults.clear()
                g.xids.clear()
                g.recovery_action = pynvml.NVML_GPU_RECOVERY_ACTION_NONE
            self.boot_id = str(uuid_mod.uuid4())

    def restore(self, pending: Iterable[Any]) -> None:
        """Faults the exporter latched before it restarted (objects with gpu, kind and xid): a real
        GPU that was neither reset nor rebooted still has them, so the simulated one does too. No
        XID event is sent again."""
        with self._lock:
            for f in pending:
                if not f.gpu.isdigit() or int(f.gpu) >= len(self._gpus):
                    continue
                g = self._gpus[int(f.gpu)]
                if f.kind == "lost":
                    g.faults.add("lost")
                elif f.kind == "xid" and f.xid.isdigit():
                    g.xids.append(int(f.xid))
                    g.recovery_action = max(g.recovery_action, _RECOVERY_BY_XID.get(int(f.xid), 0))

    def fail_driver(self, code: int | None) -> None:
        """Make every call fail with `code` (e.g. NVML_ERROR_DRIVER_NOT_LOADED); None heals."""
        self._driver_error = code

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return {
                str(g.index): {"faults": sorted(g.faults), "xids": list(g.xids)}
                for g in self._gpus
                if g.faults or g.xids
            }

    def _deliver(self, g: _Gpu, xid: int) -> None:
        for _, es in list(self._event_sets.values()):
            with es.cond:
                if g.index in es.devices:
                    es.queue.append((g, xid))
                    es.cond.notify_all()

    # ---- library lifecycle ----------------------------------------------------------------

    def _check_init(self) -> None:
        if self._driver_error is not None:
            raise _err(self._driver_error)
        if not self._initialized:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlInitWithFlags(self, flags: int) -> None:
        if self._driver_error is not None:
            raise _err(self._driver_error)
        self._initialized += 1

    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        self._check_init()
        self._initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return "580.95.05"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check_init()
        return 13000

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._check_init()
        return "13.580.95.05"

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._check_init()
        if not 0 <= index < len(self._gpus):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._gpus[index].handle

    # ---- per-device reads -------------------------------------------------------------------

    def _gpu(self, handle: Any) -> _Gpu:
        self._check_init()
        g = self._by_id.get(id(handle)) or self._by_addr.get(_addr(handle))
        if g is None:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if self.hang is not None:
            self.hang.wait()
        if "lost" in g.faults:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return g

    def _wave(self, g: _Gpu, period: float, phase: float = 0.0) -> float:
        """0..1, slowly varying, different per GPU, deterministic in time."""
        t = self._clock() - self._t0
        return 0.5 + 0.5 * math.sin(2 * math.pi * t / period + g.index * 0.9 + phase)

    def _util(self, g: _Gpu) -> float:
        return 0.2 + 0.75 * self._wave(g, 300.0)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._gpu(handle)
        return "NVIDIA H100 80GB HBM3"

    @staticmethod
    def _uuid(g: _Gpu) -> str:
        return f"GPU-5a1e0000-0000-4000-8000-{g.index:012x}"

    @staticmethod
    def _serial(g: _Gpu) -> str:
        return f"165242{g.index:07d}"

    @staticmethod
    def _pci(g: _Gpu) -> tuple[int, int]:
        return g.index // len(_BUSES), _BUSES[g.index % len(_BUSES)]

    def _pci_text(self, g: _Gpu) -> str:
        domain, bus = self._pci(g)
        return f"{domain:04x}:{bus:02x}:00"  # as the driver logs it: lower case, no function

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        mig = self._mig_parent.get(_addr(handle))
        if mig is not None:
            self._check_init()
            return next(u.decode() for u, (_, h) in self._mig.items() if _addr(h) == _addr(handle))
        return self._uuid(self._gpu(handle))

    def nvmlDeviceGetHandleByUUID(self, uuid: Any) -> Any:
        self._check_init()
        key = uuid if isinstance(uuid, bytes) else str(uuid).encode()
        if key in self._mig:
            return self._mig[key][1]
        for g in self._gpus:
            if self._uuid(g).encode() == key:
                return g.handle
        raise _err(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> Any:
        self._check_init()
        g = self._mig_parent.get(_addr(migDevice))
        if g is None:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return g.handle

    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        return self._serial(self._gpu(handle))

    def nvmlDeviceGetVbiosVersion(self, handle: Any) -> str:
        self._gpu(handle)
        return "96.00.99.00.01"

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        g = self._gpu(handle)
        info = pynvml.nvmlPciInfo_t()  # what nvmlDeviceGetPciInfo (_v3) returns
        domain, bus = self._pci(g)
        info.domain, info.bus, info.device = domain, bus, 0
        info.pciDeviceId = 0x233010DE
        info.busId = f"{domain:08X}:{bus:02X}:00.0".encode()  # NVML's "%08X:%02X:%02X.0": upper case
        info.busIdLegacy = f"{domain:04X}:{bus:02X}:00.0".encode()
        return info

    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:
        g = self._gpu(device)
        on = any(parent is g for parent in self._mig_parent.values())
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if on else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        g = self._gpu(handle)
        u = pynvml.c_nvmlUtilization_t()
        u.gpu = round(100 * self._util(g))
        u.memory = round(60 * self._util(g))
        return u

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        self._gpu(handle)
        return [0, 167000]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        g = self._gpu(handle)
        return [round(10 * self._wave(g, 120.0)), 167000]

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        g = self._gpu(handle)
        m = pynvml.c_nvmlMemory_v2_t() if version else pynvml.c_nvmlMemory_t()
        used = int((0.1 + 0.8 * self._wave(g, 900.0, 1.0)) * (H100_MEMORY_TOTAL - H100_MEMORY_RESERVED))
        used -= used % MiB
        m.total, m.used = H100_MEMORY_TOTAL, used
        if version:
            m.version = version
            m.reserved = H100_MEMORY_RESERVED
            m.free = H100_MEMORY_TOTAL - H100_MEMORY_RESERVED - used
        else:
            m.free = H100_MEMORY_TOTAL - used
        return m

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        g = self._gpu(handle)
        if type == pynvml.NVML_CLOCK_SM:
            slowed = g.faults & {"thermal_slowdown", "power_brake", "overtemp"}
            return 345 if slowed else round(1410 + 570 * self._util(g))
        if type == pynvml.NVML_CLOCK_MEM:
            return 2619
        raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _temperature(self, g: _Gpu) -> int:
        return 95 if "overtemp" in g.faults else round(33 + 40 * self._util(g))

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        g = self._gpu(handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._temperature(g)

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: Sequence[int]) -> Any:
        g = self._gpu(handle)
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        for v, fid in zip(values, fieldIds, strict=True):
            v.fieldId = fid
            v.timestamp = int(time.time() * 1e6)
            if fid == pynvml.NVML_FI_DEV_MEMORY_TEMP:
                v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                v.value.uiVal = self._temperature(g) + 6
            elif fid == pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION:
                v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                v.value.uiVal = g.recovery_action
            else:
                v.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def _power_mw(self, g: _Gpu) -> float:
        return 70_000 + 580_000 * self._util(g)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return round(self._power_mw(self._gpu(handle)))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        self._gpu(handle)
        return H100_POWER_LIMIT_MW

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """mJ since driver load: the closed-form integral of the power curve, so monotonic."""
        g = self._gpu(handle)
        t = self._clock() - self._t0
        w = 2 * math.pi / 300.0
        phase = g.index * 0.9
        # integral of 70 W + 580 W * (0.2 + 0.75 * (0.5 + 0.5 sin(w t + phase))) dt, in mJ
        mean = 70_000 + 580_000 * (0.2 + 0.375)
        wave = 580_000 * 0.375 / w * (math.cos(phase) - math.cos(w * t + phase))
        return int(3.6e12 + g.index * 1e9 + mean * t + wave)

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        return self._gpu(handle).index % 3

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        self._gpu(handle)
        return 5

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        self._gpu(handle)
        return 16

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        self._gpu(device)
        if not 0 <= link < pynvml.NVML_NVLINK_MAX_LINKS:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if link >= H100_NVLINKS:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return pynvml.NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, device: Any, link: int, counter: int) -> int:
        g = self._gpu(device)
        if link >= H100_NVLINKS:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if counter == pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT and link == 0:
            return g.nvlink_errors
        return 0

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        g = self._gpu(handle)
        if errorType == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return g.ecc_uncorrected
        return 2 * g.index

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:
        g = self._gpu(device)
        failed = "row_remap_failure" in g.faults
        pending = "row_remap_pending" in g.faults
        return (g.index % 2, int(failed or pending), int(pending), int(failed))

    def nvmlDeviceGetRetiredPages(self, device: Any, sourceFilter: int) -> list[int]:
        g = self._gpu(device)
        if not self._retired_pages_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [0x1000 * (i + 1) for i in range(g.index % 2 + sourceFilter)]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: Any) -> int:
        self._gpu(device)
        if not self._retired_pages_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        g = self._gpu(handle)
        mask = 0
        if self._util(g) < 0.25:
            mask |= pynvml.nvmlClocksEventReasonGpuIdle
        if "thermal_slowdown" in g.faults or "overtemp" in g.faults:
            mask |= pynvml.nvmlClocksEventReasonSwThermalSlowdown
            mask |= pynvml.nvmlClocksEventReasonHwThermalSlowdown
            mask |= pynvml.nvmlClocksEventReasonHwSlowdown
        if "power_brake" in g.faults:
            mask |= pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
            mask |= pynvml.nvmlClocksEventReasonHwSlowdown
        return mask

    def nvmlDeviceGetGpuFabricInfo(self, device: Any, gpuFabricInfo: Any) -> int:
        """Fills the c_nvmlGpuFabricInfo_t (passed by reference) as a registered GPU of an NVL72-style
        partition; NOT_SUPPORTED without a fabric, as on PCIe GPUs."""
        self._gpu(device)
        if self.fabric is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        info = getattr(gpuFabricInfo, "_obj", gpuFabricInfo)
        info.clusterUuid[:] = list(uuid_mod.UUID(self.fabric[0]).bytes)
        info.cliqueId = self.fabric[1]
        info.state = pynvml.NVML_GPU_FABRIC_STATE_COMPLETED
        info.status = pynvml.NVML_SUCCESS
        return pynvml.NVML_SUCCESS

    def nvmlDeviceGetPerformanceState(self, handle: Any) -> int:
        g = self._gpu(handle)
        return 0 if self._util(g) >= 0.25 else 2

    # ---- events ---------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> Any:
        self._check_init()
        struct = pynvml.struct_c_nvmlEventSet_t()
        ptr = pynvml.c_nvmlEventSet_t(struct)
        self._event_sets[_addr(ptr)] = (struct, _EventSet())
        return ptr

    def _event_set(self, event_set: Any) -> _EventSet:
        entry = self._event_sets.get(_addr(event_set))
        if entry is None:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return entry[1]

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: Any) -> None:
        g = self._gpu(handle)
        if eventTypes & ~pynvml.nvmlEventTypeXidCriticalError:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        es = self._event_set(eventSet)
        with es.cond:
            es.devices.add(g.index)

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Any:
        self._check_init()
        es = self._event_set(eventSet)
        with es.cond:
            if not es.queue:
                es.cond.wait(timeoutms / 1000)
            if not es.queue:
                raise _err(pynvml.NVML_ERROR_TIMEOUT)
            g, xid = es.queue.popleft()
        data = pynvml.c_nvmlEventData_t()
        data.device = g.handle
        data.eventType = pynvml.nvmlEventTypeXidCriticalError
        data.eventData = xid
        return data

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> Any:
        return self.nvmlEventSetWait(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        if self._event_sets.pop(_addr(eventSet), None) is None:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
