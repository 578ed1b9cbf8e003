"""The GPU exporter's metric names, types, help and label names: one table, used by the collector,
the docs and the tests (so a rename is one edit and cannot silently empty a dashboard)."""

from __future__ import annotations

from dataclasses import dataclass

from vigil_common import xid


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...] = ("gpu", "uuid")


_SPECS = [
    Spec("gpu_info", "gauge", "GPU identity; always 1. Join on uuid for name, driver and bus id.",
         ("gpu", "uuid", "name", "pci_bus_id", "serial", "vbios_version", "driver_version",
          "cuda_driver_version", "mig_mode")),
    Spec("gpu_fabric_info", "gauge", "The GPU's NVLink fabric partition; always 1. <cluster_uuid>.<clique_id> is "
         "the NVLink domain (GPU Feature Discovery's nvidia.com/gpu.clique). Absent without an NVLink fabric.",
         ("gpu", "uuid", "cluster_uuid", "clique_id")),
    Spec("gpu_accessible", "gauge", "1 if NVML can read the GPU, 0 if it is lost (fell off the bus) or needs a reset."),
    Spec("gpu_utilization_ratio", "gauge", "Share of the last sample period a kernel ran on the GPU (0-1)."),
    Spec("gpu_memory_utilization_ratio", "gauge",
         "Share of the last sample period device memory was read or written (0-1)."),
    Spec("gpu_encoder_utilization_ratio", "gauge", "Video encoder utilization (0-1)."),
    Spec("gpu_decoder_utilization_ratio", "gauge", "Video decoder utilization (0-1)."),
    Spec("gpu_memory_used_bytes", "gauge", "Device memory allocated by processes."),
    Spec("gpu_memory_free_bytes", "gauge", "Device memory free for allocation."),
    Spec("gpu_memory_reserved_bytes", "gauge", "Device memory reserved by the driver and firmware."),
    Spec("gpu_memory_total_bytes", "gauge", "Total installed device memory."),
    Spec("gpu_sm_clock_hertz", "gauge", "Current SM clock."),
    Spec("gpu_memory_clock_hertz", "gauge", "Current memory clock."),
    Spec("gpu_temperature_celsius", "gauge", "GPU core temperature."),
    Spec("gpu_memory_temperature_celsius", "gauge", "HBM memory temperature."),
    Spec("gpu_power_usage_watts", "gauge", "Power draw of the board."),
    Spec("gpu_power_limit_watts", "gauge", "Enforced power limit."),
    Spec("gpu_energy_consumption_joules_total", "counter", "Energy used since the driver was loaded."),
    Spec("gpu_pcie_replay_errors_total", "counter", "PCIe replays (link-level retransmissions)."),
    Spec("gpu_pcie_link_generation", "gauge", "Current PCIe link generation."),
    Spec("gpu_pcie_link_width", "gauge", "Current PCIe link width in lanes."),
    Spec("gpu_nvlink_errors_total", "counter",
         "NVLink data-link errors per active link and error type; re-read every --nvlink-interval seconds.",
         ("gpu", "uuid", "link", "error")),
    Spec("gpu_ecc_corrected_errors_total", "counter", "Corrected (single-bit) ECC errors since driver load."),
    Spec("gpu_ecc_uncorrected_errors_total", "counter", "Uncorrected (double-bit) ECC errors since driver load."),
    Spec("gpu_remapped_rows_total", "counter", "Memory rows remapped, by the kind of error that caused it.",
         ("gpu", "uuid", "cause")),
    Spec("gpu_row_remap_pending", "gauge", "1 if a row remap is pending and the GPU needs a reset to apply it."),
    Spec("gpu_row_remap_failed", "gauge", "1 if a row remap failed; the GPU should be drained and serviced."),
    Spec("gpu_retired_pages_total", "counter", "Retired memory pages (pre-Ampere GPUs), by cause.",
         ("gpu", "uuid", "cause")),
    Spec("gpu_retired_pages_pending", "gauge", "1 if page retirement is pending until the next reset."),
    Spec("gpu_clock_event_active", "gauge", "1 while this reason holds clocks down (throttling).",
         ("gpu", "uuid", "reason")),
    Spec("gpu_xid_errors_total", "counter",
         "XID errors reported by the driver, per code and source (nvml: the event API; kernel: the kernel log). "
         "One fault seen by both sources counts once per source: aggregate with max without (source). "
         "Known codes are pre-created at 0.",
         ("gpu", "uuid", "xid", "source")),
    Spec("gpu_xid_last_timestamp_seconds", "gauge",
         "Unix time of the last XID of this code on this GPU, from either source.", ("gpu", "uuid", "xid")),
    Spec("gpu_xid_follow_on_errors_total", "counter",
         "XIDs the kernel log says were caused by an earlier XID (cause_xid), not counted as new faults.",
         ("gpu", "uuid", "xid", "cause_xid")),
    Spec("gpu_nvswitch_sxid_errors_total", "counter",
         "NVSwitch SXid errors from the kernel log, per switch, code and severity (fatal, non_fatal, unknown).",
         ("device", "sxid", "severity")),
    Spec("gpu_nvswitch_sxid_last_timestamp_seconds", "gauge",
         "Unix time of the last SXid of this code on this NVSwitch.", ("device", "sxid", "severity")),
    Spec("gpu_fault_pending", "gauge",
         "1 while a fault of this GPU is pending: an XID that needs node action (kind xid) or the GPU lost "
         "(kind lost), until NVML says the GPU was reset or the node reboots; kept across exporter restarts.",
         ("gpu", "uuid", "kind", "xid")),
    Spec("gpu_fault_pending_since_timestamp_seconds", "gauge",
         "Unix time the pending fault was first seen.", ("gpu", "uuid", "kind", "xid")),
    Spec("gpu_allocation_info", "gauge",
         "1 for every container the kubelet allocated this GPU to (whole, a MIG slice or a shared replica); "
         "join on uuid. From the pod-resources API, refreshed on an interval.",
         ("gpu", "uuid", "namespace", "pod", "container")),
    Spec("gpu_recovery_action", "gauge",
         "Driver-requested recovery: 0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset."),
    Spec("gpu_performance_state", "gauge", "Performance state (P-state), 0 is maximum performance."),
    Spec("gpu_exporter_nvml_up", "gauge", "1 if NVML is initialised and answers.", ()),
    Spec("gpu_exporter_devices", "gauge", "GPUs NVML reports on this host.", ()),
    Spec("gpu_exporter_collect_duration_seconds", "gauge", "Duration of the last NVML collection.", ()),
    Spec("gpu_exporter_last_collect_success", "gauge",
         "1 if the last collection finished within its time bound; 0 and per-GPU values are omitted otherwise.", ()),
    Spec("gpu_exporter_nvml_errors_total", "counter", "NVML calls that failed, by error.", ("error",)),
    Spec("gpu_exporter_fault_state_persisted", "gauge",
         "1 if the pending faults are saved in the --state-dir file for this boot; 0 if held in memory only.", ()),
    Spec("gpu_exporter_alert_pushes_total", "counter",
         "Fast-path pushes to Alertmanager by result (success, failure per replica; dropped events).", ("result",)),
    Spec("gpu_exporter_kernel_log_up", "gauge", "1 while the kernel log is open and read.", ()),
    Spec("gpu_exporter_kernel_log_lines_total", "counter",
         "Driver lines read from the kernel log, by what they were (xid, follow_on, sxid, gpu_uuid, malformed, "
         "unmapped: an XID at a PCI address no known GPU has).", ("result",)),
    Spec("gpu_exporter_kernel_log_lost_records_total", "counter",
         "Kernel-log records overwritten before they were read (gaps in /dev/kmsg sequence numbers).", ()),
    Spec("gpu_exporter_pod_resources_up", "gauge", "1 if the last read of the kubelet pod-resources API worked.",
         ()),
    Spec("gpu_exporter_pod_resources_allocatable_devices", "gauge",
         "GPU devices the kubelet can allocate, by resource (GetAllocatableResources; absent where unimplemented).",
         ("resource",)),
    Spec("gpu_exporter_build_info", "gauge", "Exporter build; always 1.",
         ("version", "nvml_version", "nvidia_ml_py_version")),
]
SPECS: dict[str, Spec] = {s.name: s for s in _SPECS}

CLOCK_EVENT_REASONS: dict[str, str] = {
    # label value -> pynvml constant name
    "gpu_idle": "nvmlClocksEventReasonGpuIdle",
    "applications_clocks_setting": "nvmlClocksEventReasonApplicationsClocksSetting",
    "sw_power_cap": "nvmlClocksEventReasonSwPowerCap",
    "hw_slowdown": "nvmlClocksEventReasonHwSlowdown",
    "sync_boost": "nvmlClocksEventReasonSyncBoost",
    "sw_thermal": "nvmlClocksEventReasonSwThermalSlowdown",
    "hw_thermal": "nvmlClocksEventReasonHwThermalSlowdown",
    "hw_power_brake": "nvmlClocksEventReasonHwPowerBrakeSlowdown",
    "display_clock_setting": "nvmlClocksEventReasonDisplayClockSetting",
}

NVLINK_ERRORS: dict[str, str] = {
    "crc_flit": "NVML_NVLINK_ERROR_DL_CRC_FLIT",
    "crc_data": "NVML_NVLINK_ERROR_DL_CRC_DATA",
    "replay": "NVML_NVLINK_ERROR_DL_REPLAY",
    "recovery": "NVML_NVLINK_ERROR_DL_RECOVERY",
}

# XID codes whose series exist at 0 from the start, so increase() sees the first event.
DEFAULT_XIDS: tuple[int, ...] = xid.PRECREATED
