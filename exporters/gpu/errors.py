"""How an NVML error code changes what the exporter does: omit a series, mark a GPU lost, or re-init."""

from __future__ import annotations

import threading
from enum import Enum

import pynvml


class Outcome(Enum):
    ABSENT = "absent"  # the series is omitted for this GPU; never exported as a fake 0
    COUNTED = "counted"  # omitted and worth counting: a transient or a hardware hint
    GPU_LOST = "gpu_lost"  # this GPU is inaccessible; the others keep reporting
    DRIVER = "driver"  # the library or driver is gone: re-initialise (with backoff)


# Bounded label values for gpu_exporter_nvml_errors_total{error}.
_CODES: dict[int, tuple[str, Outcome]] = {
    pynvml.NVML_ERROR_UNINITIALIZED: ("uninitialized", Outcome.DRIVER),
    pynvml.NVML_ERROR_INVALID_ARGUMENT: ("invalid_argument", Outcome.COUNTED),
    pynvml.NVML_ERROR_NOT_SUPPORTED: ("not_supported", Outcome.ABSENT),
    pynvml.NVML_ERROR_NO_PERMISSION: ("no_permission", Outcome.ABSENT),
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: ("driver_not_loaded", Outcome.DRIVER),
    pynvml.NVML_ERROR_TIMEOUT: ("timeout", Outcome.COUNTED),
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: ("library_not_found", Outcome.DRIVER),
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: ("function_not_found", Outcome.ABSENT),
    pynvml.NVML_ERROR_CORRUPTED_INFOROM: ("corrupted_inforom", Outcome.COUNTED),
    pynvml.NVML_ERROR_GPU_IS_LOST: ("gpu_is_lost", Outcome.GPU_LOST),
    pynvml.NVML_ERROR_RESET_REQUIRED: ("reset_required", Outcome.GPU_LOST),
    pynvml.NVML_ERROR_OPERATING_SYSTEM: ("operating_system", Outcome.ABSENT),
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: ("lib_rm_version_mismatch", Outcome.DRIVER),
    pynvml.NVML_ERROR_IN_USE: ("in_use", Outcome.COUNTED),
    pynvml.NVML_ERROR_DEPRECATED: ("deprecated", Outcome.ABSENT),
    pynvml.NVML_ERROR_GPU_NOT_FOUND: ("gpu_not_found", Outcome.GPU_LOST),
}
COLLECT_TIMEOUT = "collect_timeout"
OTHER = "other"
ERROR_LABELS = tuple(sorted({label for label, _ in _CODES.values()} | {COLLECT_TIMEOUT, OTHER}))


def classify(err: pynvml.NVMLError) -> tuple[str, Outcome]:
    return _CODES.get(getattr(err, "value", None), (OTHER, Outcome.COUNTED))


class ErrorCounts:
    """Thread-safe counts per bounded label; the scrape and the XID thread both write."""

    def __init__(self, labels: tuple[str, ...] = ERROR_LABELS, fallback: str = OTHER) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(labels, 0)
        self._fallback = fallback

    def inc(self, label: str) -> None:
        with self._lock:
            self._counts[label if label in self._counts else self._fallback] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class DriverFailure(Exception):
    """NVML as a whole stopped working; the collection is abandoned and NVML re-initialised."""


class GpuLost(Exception):
    """This GPU answered GPU_IS_LOST (or needs a reset); it is reported inaccessible."""
