"""Vigil's Prometheus rules as code: one config, one list of rules (each with its runbook), rendered
to `alerts/rules/*.yml`, the PrometheusRule for Prometheus Operator users, and `docs/runbooks/`.

    python -m alerts.generate           # write the files
    python -m alerts.generate --check   # exit 1 if a committed file is stale

Only features Prometheus 2.42 accepts (no group labels, no query_offset). Remediable alerts
aggregate to exactly the labels the remediator acts on (`node, gpu, uuid[, xid]` or
`namespace, service, pod`), so the GPU exporter's fast path can send the same label set.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from vigil_common import sxid, topology, xid
from vigil_common.generated import write_or_check
from vigil_common.pushed_alerts import PUSHED, REMEDIATE
from vigil_common.runbooks import RUNBOOK_URL

ROOT = Path(__file__).resolve().parent.parent

# The pods holding the GPU, through the exporter's join series; prints nothing without attribution, so the
# alert itself never depends on it.
PODS = ('{{ with query (printf "count by (namespace, pod) (gpu_allocation_info{node=%q, uuid=%q})" '
        '$labels.node $labels.uuid) | sortByLabel "pod" }} Pods on it:'
        '{{ range . }} {{ .Labels.namespace }}/{{ .Labels.pod }}{{ end }}.'
        '{{ end }}')
# One fault seen by both sources (NVML events, kernel log) is one event per source: aggregates take
# the larger of the two increases, never their sum (README: "One XID, two sources").
XID_INCREASE = "max without (source) (increase(gpu_xid_errors_total{{{j}, xid=~\"{codes}\"}}[{w}]))"


@dataclass(frozen=True)
class Settings:
    """Every selector, threshold and window in one place (kubernetes-mixin style)."""
    runbook_url: str = RUNBOOK_URL
    gpu_job: str = 'job="vigil-gpu-exporter"'
    service_job: str = 'job="vigil-service-exporter"'
    remediator_job: str = 'job="vigil-remediator"'
    xid_window: str = "10m"  # SXid and recoverable XID alerts fire this long after the last event (and the
    # critical XID alert, for exporters without latched faults)
    temperature_celsius: int = 90
    nvlink_errors_per_second: float = 1.0
    service_failing_share: float = 0.25
    slo_objective: float = 0.99  # probes within the latency / TTFT bound, 30-day
    # Bucket boundaries as the exporter writes them: Prometheus 2.x does not normalise `le`, and
    # prometheus_client renders 1 as "1.0".
    latency_bound_seconds: str = "2.5"  # of service_probe_duration_seconds
    ttft_bound_seconds: str = "1.0"  # of service_probe_time_to_first_token_seconds
    gpu_interval: str = "5s"  # rule group evaluation; the fault -> webhook floor includes it
    # An NVLink domain (GPU Feature Discovery's nvidia.com/gpu.clique, <clusterUuid>.<cliqueId>) is degraded at
    # max(domain_min_nodes, domain_min_share of its members) faulty members: the remediator's topology defaults.
    domain_min_nodes: int = 2
    domain_min_share: float = 0.25


@dataclass(frozen=True)
class Runbook:
    meaning: str
    impact: str
    diagnosis: str
    mitigation: str
    automation: str


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    runbook: Runbook
    for_: str = "0s"
    labels: dict[str, str] = field(default_factory=dict)
    keep_firing_for: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    file: str
    rules: list
    interval: str | None = None


def _re(codes: tuple[int, ...]) -> str:
    return "|".join(str(c) for c in codes)



def pushed(kind: str, inner: str, condition: str, description: str, runbook: Runbook, **kw: object) -> Alert:
    """A rule the fast path also pushes: name, severity, summary, static labels and `by` labels come
    from vigil_common.pushed_alerts, so the two alerts have one label set."""
    spec = PUSHED[kind]
    return Alert(spec.alertname, f"max by ({', '.join(spec.by)}) ({inner}){condition}", spec.severity,
                 spec.summary, description, runbook, labels=dict(spec.extra), **kw)


def gpu_alerts(s: Settings) -> list[Alert]:
    """Per-GPU alerts; each description names the pods holding the GPU where attribution is on."""
    return [replace(a, description=a.description + PODS) for a in _gpu_alerts(s)]


def _gpu_alerts(s: Settings) -> list[Alert]:
    j = s.gpu_job
    gpu = "node, gpu, uuid"
    return [
        pushed("xid", _xid_pending(s), "",
               "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} reported XID {{ $labels.xid }} "
               "{{ $value | humanizeDuration }} ago.",
              Runbook("The GPU exporter (NVML's event thread or the kernel log) saw an XID that NVIDIA's catalog "
                      "classes as needing "
                      "node-level action (e.g. 48 double-bit ECC, 74 NVLink, 79 fallen off the bus, 95 "
                      "uncontained ECC, 119/120 GSP). It fires while the fault is pending "
                      "(`gpu_fault_pending`): until NVML says the GPU was reset (its recovery action is back to "
                      "none, or it answers again) or the node reboots, across exporter restarts. An exporter "
                      "without latched faults (no `gpu_exporter_fault_state_persisted`) makes it fire for "
                      + s.xid_window + " after the last event.",
                      "Jobs on this GPU fail or hang; new pods scheduled on the node may fail the same way.",
                      "`kubectl describe node <node>`; `nvidia-smi -q -i <gpu>`; the kernel log "
                      "(`dmesg | grep -i xid`); `gpu_recovery_action` for what the driver asks for.",
                      "Cordon and drain the node, then reset the GPU or reboot; RMA if it repeats.",
                      "With the example policy the remediator cordons, drains, reboots, validates and uncordons "
                      "the node; for XID 48 and 95 it first drains only the GPU's pods and resets the GPU, and "
                      "reboots only if that is not verified (within the disruption budget and breaker), "
                      "recording an Event and an audit entry. Pause with the node annotation "
                      "`vigil.io/remediation: disabled`.")),
        Alert("GpuXidMemoryRecoverable",
              f"max by ({gpu}, xid) (time() - gpu_xid_last_timestamp_seconds{{{j}, "
              f"xid=~\"{_re(xid.MEMORY_RECOVERABLE)}\"}}) < {_seconds(s.xid_window)}",
              "warning", "A GPU recorded a recoverable memory error event.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} reported XID {{ $labels.xid }} "
              "{{ $value | humanizeDuration }} ago.",
              Runbook("XID 63 (row-remap / page-retirement recording), 92 (high single-bit ECC rate) or 94 "
                      "(contained ECC error): the memory subsystem contained the error.",
                      "Usually none at once; a reset applies pending remaps. Repeats predict a failure.",
                      "Check `gpu_row_remap_pending`, `gpu_remapped_rows_total` and `gpu_ecc_*` for the GPU.",
                      "Schedule a GPU reset at a quiet time; watch the trend.",
                      "None by default: not routed to the remediator."),
              ),
        Alert("GpuXidApplicationErrors",
              f"sum by ({gpu}) ({XID_INCREASE.format(j=j, codes=_re(xid.APPLICATION), w='1h')}) >= 3 "
              f"unless on ({gpu}) sum by ({gpu}) (increase(gpu_xid_follow_on_errors_total{{{j}}}[1h])) > 0",
              "warning", "A GPU keeps reporting application XID errors.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} reported {{ $value }} "
              "application XIDs (13, 31, 43, 45) in the last hour.",
              Runbook("XIDs 13, 31, 43 and 45 are normally the workload's fault. Three or more in an hour on one "
                      "GPU (NVSentinel's RepeatedXIDErrorOnSameGPU) suggests the GPU. Counted once when NVML "
                      "and the kernel log both saw an event; quiet on a GPU whose kernel log said an XID 45 was "
                      "caused by an earlier XID (that one has its own alert).",
                      "Jobs on the GPU crash repeatedly.",
                      "Which pods ran on the GPU; whether different workloads hit the same GPU.",
                      "Restart the workload; if other workloads fail on the same GPU, drain the node.",
                      "None: application XIDs never cordon a node (NVSentinel PR #1629 flagged 77 nodes "
                      "from one crash burst of XID 45)."),
              for_="5m"),
        pushed("lost", f"gpu_accessible{{{j}}} == 0 or gpu_fault_pending{{{j}, kind=\"lost\"}}", "",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} is not accessible to NVML.",
              Runbook("NVML answers GPU_IS_LOST (or RESET_REQUIRED) for this GPU; the exporter keeps its "
                      "identity and reports `gpu_accessible 0`, and latches the fault "
                      "(`gpu_fault_pending{kind=\"lost\"}`) until the GPU answers again or the node reboots, "
                      "also when the exporter restarts and NVML can no longer name the GPU.",
                      "Everything on the GPU has failed; the device plugin may still advertise it.",
                      "`nvidia-smi` (may hang); `dmesg | grep -i 'fallen off the bus'`.",
                      "Cordon the node and reboot or power-cycle it; RMA if it recurs.",
                      "With the example policy the remediator cordons the node and taints it "
                      "`vigil.io/gpu-lost=gpu<N>:NoSchedule`. This alert inhibits the other alerts of that GPU.")),
        pushed("ecc_uncorrected", f"increase(gpu_ecc_uncorrected_errors_total{{{j}}}[10m])", " > 0",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} had {{ $value }} "
              "uncorrectable ECC errors in 10 minutes.",
              Runbook("Volatile uncorrectable (double-bit) ECC errors increased.",
                      "Data on the GPU may be corrupt; the process that touched it was killed.",
                      "`nvidia-smi -q -d ECC,ROW_REMAPPER -i <gpu>`.",
                      "Drain the node and reset the GPU; RMA if remapping fails.",
                      "Routed to the remediator: the example policy drains the GPU's pods, resets the GPU and "
                      "verifies it, rebooting the node if that does not help."),
              ),
        pushed("row_remap_failure", f"gpu_row_remap_failed{{{j}}} == 1", "",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} reports a row-remap failure.",
              Runbook("The row remapper ran out of spare rows or failed: the memory is permanently degraded.",
                      "Uncorrectable errors will recur on this GPU.", "`nvidia-smi -q -d ROW_REMAPPER -i <gpu>`.",
                      "Drain the node and RMA the GPU.",
                      "Routed to the remediator: the example policy cordons and drains the node and replaces it "
                      "(the GPU needs an RMA)."),
              ),
        Alert("GpuRowRemapPending", f"max by ({gpu}) (gpu_row_remap_pending{{{j}}} == 1)", "warning",
              "A GPU has a row remap pending until its next reset.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} needs a reset to apply a "
              "pending row remap.",
              Runbook("A row remap was recorded and is applied at the next GPU reset.",
                      "Until then the bad row may produce more errors.", "`nvidia-smi -q -d ROW_REMAPPER -i <gpu>`.",
                      "Reset the GPU when its workload allows (drain first).", "None by default."),
              for_="5m"),
        Alert("GpuRecoveryActionRequired", f"max by ({gpu}) (gpu_recovery_action{{{j}}} > 0)", "critical",
              "The GPU driver asks for a recovery action.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} asks for recovery action "
              "{{ $value }} (1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset).",
              Runbook("NVML's GPU_RECOVERY_ACTION field is non-zero: the driver's own verdict on what the GPU needs.",
                      "The GPU is unusable or degraded until the action is taken.",
                      "`nvidia-smi -q -i <gpu>`; the XID alerts of the same GPU.",
                      "Do what the value says: reset the GPU (1), reboot (2), or drain then reset (3, 4).",
                      "Routed to the remediator with the value as `recovery_action`: the example policy drains "
                      "the GPU's pods and resets the GPU for 1, 3 (its peer-to-peer users hold it, so they are "
                      "the pods drained) and 4, and reboots the node for 2, validating before it returns to "
                      "service."),
              labels={**REMEDIATE, "recovery_action": "{{ $value }}"}),
        Alert("GpuThermalSlowdown",
              f"max by ({gpu}) (gpu_clock_event_active{{{j}, reason=~\"hw_thermal|sw_thermal\"}} == 1)", "warning",
              "A GPU is throttling its clocks for temperature.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} is thermally throttled.",
              Runbook("The thermal slowdown clock-event reason is active.",
                      "The GPU runs slower; inference latency rises.",
                      "`gpu_temperature_celsius`, `gpu_memory_temperature_celsius`; airflow and fan state.",
                      "Check cooling; move load away if it persists.", "None by default."),
              for_="2m"),
        Alert("GpuPowerBrake",
              f"max by ({gpu}) (gpu_clock_event_active{{{j}, reason=\"hw_power_brake\"}} == 1)", "warning",
              "A GPU's power brake is engaged.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} has the hardware power brake "
              "active.",
              Runbook("The external power-brake signal holds the GPU's clocks down (PSU or rack power event).",
                      "All GPUs behind the same power feed slow down.", "Rack power and PSU status.",
                      "Fix the power supply.", "None by default."),
              for_="1m"),
        Alert("GpuTemperatureHigh", f"max by ({gpu}) (gpu_temperature_celsius{{{j}}}) > {s.temperature_celsius}",
              "warning", "A GPU is running hot.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} is at {{ $value }} °C.",
              Runbook(f"The core temperature is above {s.temperature_celsius} °C.",
                      "Thermal throttling follows; sustained heat shortens the GPU's life.",
                      "Fans, inlet temperature, neighbouring GPUs.", "Check cooling.", "None by default."),
              for_="5m"),
        Alert("GpuNvlinkErrors",
              f"sum by ({gpu}) (rate(gpu_nvlink_errors_total{{{j}}}[5m])) > {s.nvlink_errors_per_second}",
              "warning", "A GPU's NVLink links report errors.",
              "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }} sees {{ $value | humanize }} "
              "NVLink errors per second.",
              Runbook("NVLink data-link error counters (CRC, replay, recovery) are rising.",
                      "Multi-GPU jobs slow down or fail (XID 74 may follow).",
                      "`nvidia-smi nvlink -e -i <gpu>`; which links (`gpu_nvlink_errors_total{link}`).",
                      "Drain and reseat or service the NVLink/NVSwitch path.", "None by default."),
              for_="10m"),
    ]


def _xid_pending(s: Settings) -> str:
    """Seconds since the fault while it is pending (the exporter's latched state); for an exporter
    without latched faults, since the last event within the window, as before."""
    j, codes = s.gpu_job, _re(xid.NODE_ACTION)
    return (f"time() - gpu_fault_pending_since_timestamp_seconds{{{j}, kind=\"xid\", xid=~\"{codes}\"}} or "
            f"(time() - gpu_xid_last_timestamp_seconds{{{j}, xid=~\"{codes}\"}} < {_seconds(s.xid_window)} "
            f"unless on (job, instance) gpu_exporter_fault_state_persisted{{{j}}})")


def nvswitch_alerts(s: Settings) -> list[Alert]:
    """SXids from the kernel log: fatal pages, unclassified opens a ticket, non-fatal is only counted."""
    j = s.gpu_job
    window = _seconds(s.xid_window)
    by = "node, device, sxid"
    diagnosis = ("The kernel log (`dmesg | grep -i sxid`); `nvidia-smi nvlink -s`; the Fabric Manager log "
                 "(`/var/log/fabricmanager.log`); `gpu_nvswitch_sxid_errors_total` by code on the GPU fleet dashboard.")
    return [
        Alert("GpuNvswitchSxidFatal",
              f"max by ({by}) (time() - gpu_nvswitch_sxid_last_timestamp_seconds{{{j}, "
              f"severity=\"{sxid.FATAL}\"}}) < {window}", "critical",
              "An NVSwitch reported a fatal SXid error.",
              "NVSwitch {{ $labels.device }} on node {{ $labels.node }} reported fatal SXid {{ $labels.sxid }} "
              "{{ $value | humanizeDuration }} ago.",
              Runbook("The NVSwitch driver logged an SXid marked Fatal (for example 24007, a sourcetrack timeout). "
                      f"It fires for {s.xid_window} after the last one.",
                      "NVLink traffic through the switch fails: multi-GPU jobs on the node hang or crash, and "
                      "the fabric may need a reset.", diagnosis,
                      "Drain the node; reset the fabric (restart Fabric Manager) or reboot; RMA the baseboard if "
                      "it repeats.",
                      "Routed to the remediator: the example policy cordons and drains the node, reboots it, "
                      "validates it and returns it to service (replaces it if validation fails)."),
              labels=REMEDIATE),
        Alert("GpuNvswitchSxidUnclassified",
              f"max by ({by}) (time() - gpu_nvswitch_sxid_last_timestamp_seconds{{{j}, "
              f"severity=\"{sxid.UNKNOWN}\"}}) < {window}", "warning",
              "An NVSwitch reported an SXid error of unknown severity.",
              "NVSwitch {{ $labels.device }} on node {{ $labels.node }} reported SXid {{ $labels.sxid }} without "
              "a severity {{ $value | humanizeDuration }} ago.",
              Runbook("The NVSwitch driver logged an SXid whose line says neither Fatal nor Non-fatal (for example "
                      "26006, SOE HALTED). NVSentinel treats these as fatal; Vigil asks a person to look.",
                      "Possibly none; possibly the same as a fatal SXid.", diagnosis,
                      "Look the code up in NVIDIA's NVSwitch SXid documentation; treat it as fatal if the "
                      "fabric is degraded.", "None.")),
    ]


def domain_alerts(s: Settings) -> list[Alert]:
    """Several members of one NVLink domain faulty at once: the cause is likely shared (an NVSwitch tray,
    power, cooling), so the domain is one incident, not N node repairs."""
    faulty = topology.faulty_members(s.gpu_job, _seconds(s.xid_window))
    return [
        Alert("GpuDomainDegraded",
              f"({faulty} >= {s.domain_min_nodes}) and on (domain) "
              f"({faulty} / on (domain) count by (domain) ({topology.members(s.gpu_job)}) "
              f">= {s.domain_min_share:g})", "critical",
              "Several nodes of one NVLink domain are faulty at once.",
              "{{ $value }} members of NVLink domain {{ $labels.domain }} have a pending GPU fault or a fatal "
              "NVSwitch SXid.",
              Runbook("At least " + f"{s.domain_min_nodes} nodes (and {s.domain_min_share:.0%}) of one NVLink "
                      "partition (the nodes whose GPUs share a `gpu_fabric_info` cluster_uuid and clique_id, "
                      "GPU Feature Discovery's `nvidia.com/gpu.clique`) have a pending XID or lost-GPU fault or "
                      "a recent fatal SXid.",
                      "The shared part (NVSwitch tray, power shelf, cooling) likely failed: multi-node jobs on "
                      "the domain fail, and per-node reboots fix nothing.",
                      "`kubectl get nodes -L nvidia.com/gpu.clique`; which members fault and in what order "
                      "(the domain incident's evidence); the Fabric Manager log; the rack's power and cooling.",
                      "Take the domain out together, then service the shared part; return the members together.",
                      "Routed to the remediator, which also correlates it itself (`topology:`): one domain "
                      "incident runs the `policy.domain_rules` ladder (the example cordons and drains every "
                      "member and leaves the domain to people with the evidence); the members' own ladders "
                      "join it, and `safety.budget.domains` caps how many domains are out at once."),
              labels={**REMEDIATE, "domain_kind": "nvlink"}),
    ]


def exporter_alerts(s: Settings) -> list[Alert]:
    return [
        Alert("GpuExporterDown", f"up{{{s.gpu_job}}} == 0", "critical", "A GPU exporter cannot be scraped.",
              "The GPU exporter {{ $labels.instance }} on node {{ $labels.node }} has been down for 2 minutes.",
              Runbook("Prometheus cannot scrape a GPU exporter.",
                      "No GPU signal from that node: GPU faults there go unseen and unremediated.",
                      "`kubectl -n vigil get pods -o wide -l app=vigil-gpu-exporter`; the pod's logs.",
                      "Restart the DaemonSet pod; check the node.", "None: Vigil does not act on missing data."),
              for_="2m"),
        Alert("GpuExporterNvmlDown", f"gpu_exporter_nvml_up{{{s.gpu_job}}} == 0", "warning",
              "A GPU exporter cannot use NVML.",
              "The GPU exporter on node {{ $labels.node }} reports NVML unavailable.",
              Runbook("The exporter runs but NVML does not initialise (no driver, library mismatch after an "
                      "upgrade, or the container lacks the NVIDIA runtime).",
                      "No GPU metrics from the node.", "The exporter's log line 'NVML unavailable'; "
                      "`gpu_exporter_nvml_errors_total` by error.",
                      "Fix the driver or the runtime class; the exporter re-initialises by itself.", "None."),
              for_="5m"),
        Alert("GpuExporterCollectFailing", f"gpu_exporter_last_collect_success{{{s.gpu_job}}} == 0", "warning",
              "A GPU exporter's NVML collections fail or time out.",
              "NVML collections on node {{ $labels.node }} have failed for 5 minutes.",
              Runbook("Collections overrun their time bound (a hung driver call) or see zero GPUs.",
                      "Per-GPU values are missing; XID counting continues.",
                      "`gpu_exporter_nvml_errors_total`, `gpu_exporter_collect_duration_seconds`; `nvidia-smi`.",
                      "A hung driver usually needs a node reboot.", "None."),
              for_="5m"),
    ]


def _seconds(d: str) -> int:
    from vigil_common.durations import parse_duration

    return int(parse_duration(d))


SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
BURN = (("critical", "1h", "5m", 14.4), ("critical", "6h", "30m", 6), ("warning", "1d", "2h", 3),
        ("warning", "3d", "6h", 1))
SVC = "namespace, service, zone"


def slo_recording(s: Settings, sli: str) -> list[dict]:
    """Error ratios per window of one SLI: failed probes, slow probes, or slow first tokens."""
    j = s.service_job
    total = "sum by ({g}) (rate({m}_count{{{j}}}[{w}]))"
    exprs = {
        "probe_errors": lambda w: f"sum by ({SVC}) (rate(service_probe_failures_total{{{j}}}[{w}])) / "
                                  + total.format(g=SVC, m="service_probe_duration_seconds", j=j, w=w),
        "probe_slow": lambda w: f"1 - sum by ({SVC}) (rate(service_probe_duration_seconds_bucket{{{j}, "
                                f"le=\"{s.latency_bound_seconds}\"}}[{w}])) / "
                                + total.format(g=SVC, m="service_probe_duration_seconds", j=j, w=w),
        "ttft_slow": lambda w: f"1 - sum by ({SVC}) (rate(service_probe_time_to_first_token_seconds_bucket{{{j}, "
                               f"le=\"{s.ttft_bound_seconds}\"}}[{w}])) / "
                               + total.format(g=SVC, m="service_probe_time_to_first_token_seconds", j=j, w=w),
    }
    return [{"record": f"namespace_service_zone:{sli}:ratio_rate{w}", "expr": exprs[sli](w)} for w in SLO_WINDOWS]


def service_alerts(s: Settings) -> list[Alert]:
    j = s.service_job
    budget = round(1 - s.slo_objective, 6)
    alerts = [
        Alert("InferenceEndpointDown",
              f"min by (namespace, service, pod, node, zone) (probe_success{{{j}, pod!=\"\"}}) == 0", "critical",
              "An inference endpoint fails its health probe.",
              "Pod {{ $labels.namespace }}/{{ $labels.pod }} of service {{ $labels.service }} on node "
              "{{ $labels.node }} has failed its probe for 1 minute.",
              Runbook("The service exporter's active probe of this endpoint (HTTP health or a tiny inference "
                      "request) fails.", "Requests routed to this replica fail or time out.",
                      "`probe_success{pod=...}`; the exporter's `/probe?target=...&module=...` for the reason; "
                      "the pod's logs and events.",
                      "Restart the pod; if several pods fail, look at the node or the model server.",
                      "With the service policy the remediator restarts exactly this pod (its controller "
                      "replaces it), within the per-workload restart budget, then verifies the probe."),
              for_="1m", labels=REMEDIATE),
        Alert("InferenceServiceDegraded",
              f"1 - (sum by (namespace, service) (probe_success{{{j}}}) / "
              f"count by (namespace, service) (probe_success{{{j}}})) > {s.service_failing_share}",
              "warning", "A share of an inference service's endpoints fail their probes.",
              "{{ $value | humanizePercentage }} of the endpoints of {{ $labels.namespace }}/{{ $labels.service }} "
              "fail their probes.",
              Runbook("More than " + f"{s.service_failing_share:.0%}" + " of the service's endpoints fail.",
                      "Capacity is reduced; the remaining replicas take more load.",
                      "Which pods, nodes and zones fail (`probe_success` by pod).",
                      "Look for a common cause: a node, a zone, a bad rollout.", "None directly."),
              for_="2m"),
    ]
    for sli, name, what in (("probe_errors", "InferenceAvailabilityBudgetBurn", "failed probes"),
                            ("probe_slow", "InferenceLatencyBudgetBurn",
                             f"probes slower than {s.latency_bound_seconds} s"),
                            ("ttft_slow", "InferenceTtftBudgetBurn",
                             f"time to first token over {s.ttft_bound_seconds} s")):
        for severity, long, short, factor in BURN:
            alerts.append(Alert(
                name,
                f"namespace_service_zone:{sli}:ratio_rate{long} > ({factor} * {budget}) and "
                f"namespace_service_zone:{sli}:ratio_rate{short} > ({factor} * {budget})",
                severity, "An inference service burns its error budget too fast.",
                f"{{{{ $labels.namespace }}}}/{{{{ $labels.service }}}} in zone {{{{ $labels.zone }}}}: "
                f"{{{{ $value | humanizePercentage }}}} of probes over {long} were {what} "
                f"(budget {budget:.2%}, burn rate {factor}).",
                Runbook(f"Multi-window multi-burn-rate alert on {what} against a {s.slo_objective:.0%} objective: "
                        "the long and the short window both burn faster than the factor (1h/5m x14.4, 6h/30m x6 "
                        "page; 1d/2h x3, 3d/6h x1 ticket).",
                        "At this rate the 30-day error budget runs out early; users see the degradation.",
                        "The service dashboard's burn-rate panels; which zone and pods are slow or failing.",
                        "Shift traffic away from the bad zone or pool, scale out, or roll back a bad release.",
                        "With the service policy a critical latency burn in one zone moves HTTPRoute weights "
                        "toward the other zone (guarded, verified, restored on resolve)."),
                labels={**REMEDIATE, "long": long, "short": short} if severity == "critical" and
                name == "InferenceLatencyBudgetBurn" else {"long": long, "short": short}))
    return alerts


def pipeline_alerts(s: Settings) -> list[Alert]:
    r = s.remediator_job
    return [
        Alert("Watchdog", "vector(1)", "info", "The alerting pipeline is working.",
              "Always firing, from {{ $externalLabels }}; its absence at the dead man's switch means the "
              "pipeline is broken.",
              Runbook("An always-firing alert: the dead man's switch for Prometheus -> Alertmanager -> receivers.",
                      "If it stops arriving, no alert arrives.", "Prometheus and Alertmanager health.",
                      "Restore the pipeline.", "None.")),
        Alert("VigilTargetDown",
              "100 * (count by (job, namespace) (up == 0) / count by (job, namespace) (up)) > 10", "warning",
              "Targets of a job cannot be scraped.",
              "{{ $value | humanize }}% of the {{ $labels.job }} targets are down.",
              Runbook("More than 10 % of a job's targets fail their scrapes.", "Their signals are missing.",
                      "Prometheus' targets page.", "Fix the targets or their network.", "None."),
              for_="10m"),
        Alert("VigilRemediatorDown", f"absent(up{{{r}}} == 1)", "critical", "The Vigil remediator is down.",
              "No healthy remediator has been scraped for 5 minutes{{ with $labels.job }} ({{ . }}){{ end }}.",
              Runbook("Prometheus scrapes no healthy `vigil-remediator`.",
                      "No automatic remediation; Alertmanager retries its webhooks until the group interval.",
                      "`kubectl -n vigil get pods -l app=vigil-remediator`; its logs; `/readyz`.",
                      "Restart it; accepted incidents resume from the ledger.", "None: this is Vigil itself."),
              for_="5m"),
        Alert("VigilBreakerOpen", f"max by (job) (vigil_breaker_open{{{r}}}) == 1", "critical",
              "The remediator's circuit breaker is open.",
              "The circuit breaker of {{ $labels.job }} is open: automatic actions are stopped.",
              Runbook("Attempted actions exceeded the breaker threshold in its window (an alert storm).",
                      "No automatic remediation until it is reset.",
                      "`GET /api/incidents?status=blocked`; what caused the storm (e.g. Prometheus losing targets).",
                      "Fix the cause, then `POST /api/breaker/reset` (authenticated).",
                      "The remediator opened it itself; it closes only by reset or `reset_after`."),
              ),
        Alert("VigilActionsFailing",
              f"sum by (job, action) (increase(vigil_actions_total{{{r}, result=\"failed\"}}[15m])) > 0", "warning",
              "Remediation actions fail.",
              "{{ $value | humanize }} {{ $labels.action }} actions failed in 15 minutes.",
              Runbook("Kubernetes API calls of an action failed.", "Incidents stay unremediated.",
                      "`GET /api/incidents?status=failed`; the audit trail; RBAC of the ServiceAccount.",
                      "Fix permissions or the API server; re-send the alert if needed.", "None."),
              ),
        Alert("VigilVerificationFailing",
              f"sum by (job, action) (increase(vigil_verifications_total{{{r}, result=\"failed\"}}[30m])) > 0",
              "warning", "Remediation actions did not fix what they were meant to fix.",
              "{{ $value | humanize }} {{ $labels.action }} actions were not verified in 30 minutes.",
              Runbook("An action's PromQL verification did not hold by its deadline.",
                      "The fault persists after the action.", "The incident's trace and escalation ladder.",
                      "Act by hand; review the policy.", "The remediator escalates along the rule's ladder."),
              ),
        Alert("VigilVerificationUnknown",
              f"sum by (job, action) (increase(vigil_verifications_total{{{r}, result=\"unverifiable\"}}[30m])) > 0",
              "warning", "Remediation actions could not be verified; nothing escalated.",
              "{{ $value | humanize }} {{ $labels.action }} actions stayed unverifiable in 30 minutes.",
              Runbook("An action's verification query got no answer from Prometheus up to its deadline.",
                      "Nobody knows whether the action helped; Vigil does not escalate on no data.",
                      "The incident's audit trail (`escalation_withheld`); Prometheus health.",
                      "Check the fault by hand and take the next step yourself; fix Prometheus.",
                      "The remediator leaves the next step to people (unless a rule sets on_unknown: escalate)."),
              ),
        Alert("VigilIncidentsStuck", f"max by (job) (vigil_incidents{{{r}, status=~\"pending|acting\"}}) > 0",
              "warning", "Remediation incidents are stuck.",
              "{{ $value }} incidents have been pending or acting for 15 minutes.",
              Runbook("Incidents stay pending or acting (a hung drain, an unreachable API server).",
                      "Remediation is delayed.", "`GET /api/incidents?status=acting`.",
                      "Look at the blocking drain or the API server.", "None."),
              for_="15m"),
        Alert("VigilRemediationQueueStuck", f"max by (job) (vigil_oldest_waiting_seconds{{{r}}}) > 3600",
              "warning", "A remediation has waited in Vigil's queue for over an hour.",
              "The oldest waiting incident of {{ $labels.job }} has waited {{ $value | humanizeDuration }}.",
              Runbook("A fault Vigil should act on is held back by a rail that has not cleared for an hour: the "
                      "disruption budget (nodes still out), a pause, the open breaker, a cooldown or the guard.",
                      "The faulty node or workload is not repaired; after max_wait (24h) Vigil hands it over.",
                      "`remediator queue` (what waits, for what, since when); `remediator state`.",
                      "Free what it waits for (return or replace the nodes out, resume, reset the breaker), or "
                      "act by hand.", "Each waiting incident goes on by itself as soon as its rail clears."),
              for_="5m"),
        Alert("VigilDrainBlocked",
              f"sum by (job) (increase(vigil_blocked_total{{{r}, reason=\"pdb\"}}[30m])) > 0", "warning",
              "A node drain is blocked by a PodDisruptionBudget.",
              "{{ $value | humanize }} drains were blocked by a PodDisruptionBudget in 30 minutes.",
              Runbook("A drain's evictions kept answering 429 until its deadline.",
                      "The node stays cordoned with pods on it.",
                      "The incident's drain result names the PodDisruptionBudget.",
                      "Scale the workload or relax the PDB; or opt the rule into force_after.", "None."),
              ),
        Alert("VigilIncidentErrors",
              f"sum by (job, stage) (increase(vigil_incident_errors_total{{{r}}}[15m])) > 0", "warning",
              "The remediator failed to process incidents.",
              "{{ $value | humanize }} incidents failed in stage {{ $labels.stage }} in 15 minutes.",
              Runbook("Processing an incident raised (a bug or unexpected data); the incident is marked failed "
                      "with reason internal_error.", "Those incidents are not remediated; the others are.",
                      "`GET /api/incidents?status=failed`: the detail and the audit's internal_error entry name "
                      "the exception; the remediator's log has the traceback.",
                      "Act on the affected nodes by hand; report the exception.",
                      "None: the engine goes on with the other incidents."),
              ),
        Alert("VigilRepairExhausted",
              f"sum by (job) (increase(vigil_repairs_exhausted_total{{{r}}}[6h])) > 0", "warning",
              "A node or GPU was repaired too often; it waits for an RMA.",
              "{{ $value | humanize }} repairs were refused in 6 hours because the node or GPU was repaired "
              "too often.",
              Runbook("The remediator refused a GPU reset, reboot or replacement: the node (or GPU UUID) was "
                      "repaired `repair.repeat_offenders.max_repairs` times within its window.",
                      "The node stays cordoned, labelled `vigil.io/rma-candidate=true`; its GPUs are out of "
                      "service.",
                      "`kubectl get nodes -l vigil.io/rma-candidate=true`; the node's annotation "
                      "`vigil.io/rma-reason` and the incidents it names.",
                      "Open an RMA for the GPU or the node; after the hardware is replaced remove the label and "
                      "uncordon the node.",
                      "The remediator marked the node itself; it never repairs it again automatically within "
                      "the window."),
              ),
        Alert("VigilAlertsTruncated", f"sum by (job) (increase(vigil_truncated_alerts_total{{{r}}}[15m])) > 0",
              "warning", "Alertmanager truncated alerts sent to the remediator.",
              "{{ $value | humanize }} alerts were left out of webhooks (max_alerts).",
              Runbook("Webhooks arrived with truncatedAlerts > 0.", "The remediator never saw some alerts.",
                      "The receiver's max_alerts.", "Set max_alerts: 0 on the remediator receiver.", "None."),
              ),
    ]


def groups(s: Settings) -> list[Group]:
    return [
        Group("vigil-gpu-health", "gpu.yml", gpu_alerts(s) + nvswitch_alerts(s), interval=s.gpu_interval),
        Group("vigil-gpu-domains", "gpu.yml", domain_alerts(s), interval=s.gpu_interval),
        Group("vigil-gpu-exporter", "gpu.yml", exporter_alerts(s)),
        Group("vigil-service-availability.rules", "service.yml", slo_recording(s, "probe_errors"), interval="30s"),
        Group("vigil-service-latency.rules", "service.yml", slo_recording(s, "probe_slow"), interval="30s"),
        Group("vigil-service-ttft.rules", "service.yml", slo_recording(s, "ttft_slow"), interval="30s"),
        Group("vigil-service-health", "service.yml", service_alerts(s)),
        Group("vigil-pipeline", "vigil.yml", pipeline_alerts(s)),
    ]


def _rule(a: Alert | dict, s: Settings) -> dict:
    if isinstance(a, dict):
        return a
    rule = {"alert": a.name, "expr": a.expr}
    if a.for_ != "0s":
        rule["for"] = a.for_
    if a.keep_firing_for:
        rule["keep_firing_for"] = a.keep_firing_for
    rule["labels"] = {"severity": a.severity, **a.labels}
    rule["annotations"] = {"summary": a.summary, "description": a.description,
                           "runbook_url": s.runbook_url.format(alertname=a.name)}
    return rule


def rule_files(s: Settings = Settings()) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for g in groups(s):
        group = {"name": g.name, **({"interval": g.interval} if g.interval else {}),
                 "rules": [_rule(r, s) for r in g.rules]}
        out.setdefault(g.file, {"groups": []})["groups"].append(group)
    return out


def prometheus_rule(s: Settings = Settings()) -> dict:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "vigil", "namespace": "vigil", "labels": {"app.kubernetes.io/part-of": "vigil",
                                                                          "role": "alert-rules"}},
            "spec": {"groups": [g for f in sorted(rule_files(s)) for g in rule_files(s)[f]["groups"]]}}


def runbooks(s: Settings = Settings()) -> dict[str, str]:
    out = {}
    for g in groups(s):
        for a in g.rules:
            if isinstance(a, dict) or a.name in out:
                continue
            rb = a.runbook
            out[a.name] = (f"# {a.name}\n\n{a.summary}\n\nSeverity: `{a.severity}`"
                           f"{' (also other severities: see the rule file)' if a.name.endswith('BudgetBurn') else ''}"
                           f"\n\n## Meaning\n\n{rb.meaning}\n\n## Impact\n\n{rb.impact}\n\n## Diagnosis\n\n"
                           f"{rb.diagnosis}\n\n## Mitigation\n\n{rb.mitigation}\n\n## What Vigil does automatically"
                           f"\n\n{rb.automation}\n")
    return out


HEADER = "# Generated by `python -m alerts.generate` (alerts/generate.py); do not edit by hand.\n"


def _dump(data: dict) -> str:
    return HEADER + yaml.safe_dump(data, sort_keys=False, width=120, allow_unicode=True)


def unit_tests(s: Settings = Settings()) -> dict[str, dict]:
    from alerts import testcases

    notes = {a.name: (a.summary, s.runbook_url.format(alertname=a.name))
             for g in groups(s) for a in g.rules if isinstance(a, Alert)}
    return {f"{name.removesuffix('.yml')}_test.yml": testcases.render(name, cases, notes)
            for name, cases in testcases.cases().items()}


def outputs(s: Settings = Settings(), root: Path = ROOT) -> dict[Path, str]:
    files = {root / "alerts/rules" / name: _dump(data) for name, data in rule_files(s).items()}
    files.update({root / "alerts/tests" / name: _dump(data) for name, data in unit_tests(s).items()})
    files[root / "deploy/prometheus-operator/prometheusrule.yaml"] = _dump(prometheus_rule(s))
    files[root / "deploy/helm/vigil/files/rule-groups.yaml"] = _dump({"groups": prometheus_rule(s)["spec"]["groups"]})
    files.update({root / "docs/runbooks" / f"{name}.md": text for name, text in runbooks(s).items()})
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alerts.generate")
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    ap.add_argument("--out", type=Path, default=ROOT, help="write under this root instead (tests)")
    ap.add_argument("--xid-window", default=None, help="override Settings.xid_window")
    args = ap.parse_args(argv)
    s = Settings() if args.xid_window is None else replace(Settings(), xid_window=args.xid_window)
    return write_or_check(outputs(s, args.out), args.out, check=args.check, target="alerts")


if __name__ == "__main__":
    sys.exit(main())
