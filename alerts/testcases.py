"""promtool unit tests for every alert, firing and not firing. Each case gives input series, an
evaluation time and the expected alerts (labels and description); summary and runbook_url come
from the rule itself. Rendered to `alerts/tests/*.yml` by `python -m alerts.generate`."""

from __future__ import annotations

from dataclasses import dataclass, field

GPU = 'job="vigil-gpu-exporter",instance="10.0.0.1:9835",node="n1",gpu="3",uuid="GPU-3"'
GPU_LABELS = {"node": "n1", "gpu": "3", "uuid": "GPU-3"}
SVC = 'job="vigil-service-exporter",namespace="ml",service="llm",zone="zone-a"'
REM = 'job="vigil-remediator",instance="10.0.0.9:9095"'
SW = 'job="vigil-gpu-exporter",instance="10.0.0.1:9835",node="n1",device="nvswitch0"'
ALLOC = ('gpu_allocation_info{{job="vigil-gpu-exporter",instance="10.0.0.1:9835",node="n1",gpu="3",uuid="GPU-3",'
         'namespace="ml",pod="{pod}",container="{container}"}}')
EXPORTER = GPU.split(",gpu=")[0]
XID_79 = {**GPU_LABELS, "xid": "79", "severity": "critical", "remediation": "auto"}
# XID 79 at t=60s, pending for an hour, then the node reboots (the series ends; resolved 5 minutes on).
PENDING_79 = [(f'gpu_fault_pending_since_timestamp_seconds{{{GPU},kind="xid",xid="79"}}', "60x60 _x20"),
              (f'gpu_xid_last_timestamp_seconds{{{GPU},xid="79"}}', "60x60 _x20"),
              (f"gpu_exporter_fault_state_persisted{{{EXPORTER}}}", "1x80")]
APP4 = "0 1 2 3 4 4 4 4 4 4 4"
APP_DESC = "GPU 3 (GPU-3) on node n1 reported 4 application XIDs (13, 31, 43, 45) in the last hour."


@dataclass
class Case:
    alert: str
    eval_time: str
    series: list[tuple[str, str]]
    expect: list[tuple[dict, str]] = field(default_factory=list)  # (labels, description); [] = must not fire
    interval: str = "5s"


def _burn(name: str, metric_ok: str, metric_all: str, ok_bucket: str | None, desc_what: str) -> list[Case]:
    """Traffic that burns a 99 % objective at about 50x (half the probes bad) trips every window
    pair once both windows hold data; a clean service trips none."""
    bad = [(f"{metric_all}{{{SVC}}}", "0+60x300")]
    if ok_bucket is None:  # availability: the failures counter
        bad.append((f"service_probe_failures_total{{{SVC},reason=\"timeout\"}}", "0+30x300"))
        good = [(f"{metric_all}{{{SVC}}}", "0+60x300"), (f"service_probe_failures_total{{{SVC},reason=\"timeout\"}}",
                                                          "0x300")]
    else:
        bad.append((f"{metric_ok}{{{SVC},le=\"{ok_bucket}\"}}", "0+30x300"))
        good = [(f"{metric_all}{{{SVC}}}", "0+60x300"), (f"{metric_ok}{{{SVC},le=\"{ok_bucket}\"}}", "0+60x300")]
    labels = {"namespace": "ml", "service": "llm", "zone": "zone-a", "severity": "critical", "long": "1h",
              "short": "5m"}
    if name == "InferenceLatencyBudgetBurn":
        labels["remediation"] = "auto"
    crit6 = dict(labels, long="6h", short="30m")
    warn = {k: v for k, v in labels.items() if k != "remediation"} | {"severity": "warning"}
    desc = ("ml/llm in zone zone-a: 50% of probes over {long} were " + desc_what +
            " (budget 1.00%, burn rate {factor}).")
    return [
        Case(name, "4h", bad, [(labels, desc.format(long="1h", factor="14.4")),
                               (crit6, desc.format(long="6h", factor="6")),
                               (dict(warn, long="1d", short="2h"), desc.format(long="1d", factor="3")),
                               (dict(warn, long="3d", short="6h"), desc.format(long="3d", factor="1"))],
             interval="1m"),
        Case(name, "4h", good, [], interval="1m"),
    ]


def _domain(faulty: list[str], sxid_node: str | None = None) -> list[tuple[str, str]]:
    """Two NVLink domains of 4 nodes (c1.1: m0-m3, c1.2: m4-m7), and pending faults on `faulty`."""
    out = [(f'gpu_fabric_info{{{EXPORTER.replace("n1", f"m{i}")},gpu="0",uuid="GPU-m{i}",cluster_uuid="c1",'
            f'clique_id="{1 + i // 4}"}}', "1x40") for i in range(8)]
    out += [(f'gpu_fault_pending{{{EXPORTER.replace("n1", n)},gpu="0",uuid="GPU-{n}",kind="xid",xid="79"}}', "1x40")
            for n in faulty]
    if sxid_node:
        out.append((f'gpu_nvswitch_sxid_last_timestamp_seconds{{{SW.replace("n1", sxid_node)},sxid="24007",'
                    f'severity="fatal"}}', "10x40"))
    return out


DOMAIN_1 = {"domain": "c1.1", "domain_kind": "nvlink", "severity": "critical", "remediation": "auto"}


def cases() -> dict[str, list[Case]]:
    gpu = [
        Case("GpuDomainDegraded", "30s", _domain(["m0", "m1"], sxid_node="m2"),
             [(DOMAIN_1, "3 members of NVLink domain c1.1 have a pending GPU fault or a fatal NVSwitch SXid.")]),
        Case("GpuDomainDegraded", "30s", _domain(["m0", "m4"])),  # one fault in each domain: independent
        Case("GpuDomainDegraded", "30s", _domain(["m0"], sxid_node="m0")),  # one node, two signals
        Case("GpuXidCritical", "30s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="79"}}', "10x200")],
             [({**GPU_LABELS, "xid": "79", "severity": "critical", "remediation": "auto"},
               "GPU 3 (GPU-3) on node n1 reported XID 79 20s ago.")]),
        Case("GpuXidCritical", "700s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="79"}}', "10x200")]),
        # Latched: firing while the exporter says the fault is pending, 25 and 55 minutes on, not after the reboot.
        *[Case("GpuXidCritical", at, PENDING_79, [(XID_79, f"GPU 3 (GPU-3) on node n1 reported XID 79 {ago} ago.")],
               interval="1m") for at, ago in (("25m", "24m 0s"), ("55m", "54m 0s"))],
        Case("GpuXidCritical", "70m", PENDING_79, interval="1m"),
        # A latching exporter whose fault was reset: the last XID's time alone does not fire.
        Case("GpuXidCritical", "30s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="79"}}', "10x200"),
                                       (f"gpu_exporter_fault_state_persisted{{{EXPORTER}}}", "1x200")]),
        Case("GpuXidCritical", "30s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="79"}}', "10x200"),
                                       (ALLOC.format(pod="llm-0", container="server"), "1x200"),
                                       (ALLOC.format(pod="llm-0", container="sidecar"), "1x200"),
                                       (ALLOC.format(pod="batch-7", container="main"), "1x200")],
             [({**GPU_LABELS, "xid": "79", "severity": "critical", "remediation": "auto"},
               "GPU 3 (GPU-3) on node n1 reported XID 79 20s ago. Pods on it: ml/batch-7 ml/llm-0.")]),
        Case("GpuNvswitchSxidFatal", "30s", [(f'gpu_nvswitch_sxid_last_timestamp_seconds{{{SW},sxid="24007",'
                                              'severity="fatal"}', "10x200")],
             [({"node": "n1", "device": "nvswitch0", "sxid": "24007", "severity": "critical",
                "remediation": "auto"},
               "NVSwitch nvswitch0 on node n1 reported fatal SXid 24007 20s ago.")]),
        Case("GpuNvswitchSxidFatal", "30s", [(f'gpu_nvswitch_sxid_last_timestamp_seconds{{{SW},sxid="12028",'
                                              'severity="non_fatal"}', "10x200")]),
        Case("GpuNvswitchSxidUnclassified", "30s", [(f'gpu_nvswitch_sxid_last_timestamp_seconds{{{SW},sxid="26006",'
                                                     'severity="unknown"}', "10x200")],
             [({"node": "n1", "device": "nvswitch0", "sxid": "26006", "severity": "warning"},
               "NVSwitch nvswitch0 on node n1 reported SXid 26006 without a severity 20s ago.")]),
        Case("GpuNvswitchSxidUnclassified", "700s", [(f'gpu_nvswitch_sxid_last_timestamp_seconds{{{SW},'
                                                      'sxid="26006",severity="unknown"}', "10x200")]),
        Case("GpuXidCritical", "30s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="13"}}', "10x200"),
                                       (f'gpu_xid_last_timestamp_seconds{{{GPU},xid="63"}}', "10x200")]),
        Case("GpuXidMemoryRecoverable", "30s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="63"}}', "10x200")],
             [({**GPU_LABELS, "xid": "63", "severity": "warning"},
               "GPU 3 (GPU-3) on node n1 reported XID 63 20s ago.")]),
        Case("GpuXidMemoryRecoverable", "30s", [(f'gpu_xid_last_timestamp_seconds{{{GPU},xid="79"}}', "10x200")]),
        Case("GpuXidApplicationErrors", "10m", [(f'gpu_xid_errors_total{{{GPU},xid="13"}}', "0 1 2 3 4 4 4 4 4 4 4")],
             [({**GPU_LABELS, "severity": "warning"},
               "GPU 3 (GPU-3) on node n1 reported 4 application XIDs (13, 31, 43, 45) in the last hour.")],
             interval="1m"),
        Case("GpuXidApplicationErrors", "10m", [(f'gpu_xid_errors_total{{{GPU},xid="13"}}', "0 1 1 1 1 1 1 1 1 1 1")],
             interval="1m"),
        # One fault seen by NVML and by the kernel log is one event, and one source alone is enough.
        Case("GpuXidApplicationErrors", "10m", [(f'gpu_xid_errors_total{{{GPU},xid="13",source="nvml"}}', APP4),
                                                (f'gpu_xid_errors_total{{{GPU},xid="13",source="kernel"}}', APP4)],
             [({**GPU_LABELS, "severity": "warning"}, APP_DESC)], interval="1m"),
        Case("GpuXidApplicationErrors", "10m", [(f'gpu_xid_errors_total{{{GPU},xid="13",source="nvml"}}', "0x10"),
                                                (f'gpu_xid_errors_total{{{GPU},xid="13",source="kernel"}}', APP4)],
             [({**GPU_LABELS, "severity": "warning"}, APP_DESC)], interval="1m"),
        # XID 45s the kernel log calls follow-ons of an earlier XID do not make the GPU look bad.
        Case("GpuXidApplicationErrors", "10m", [(f'gpu_xid_errors_total{{{GPU},xid="45",source="nvml"}}', APP4),
                                                (f'gpu_xid_follow_on_errors_total{{{GPU},xid="45",cause_xid="79"}}',
                                                 APP4)], interval="1m"),
        Case("GpuLost", "15s", [(f"gpu_accessible{{{GPU}}}", "1 1 0 0 0")],
             [({**GPU_LABELS, "severity": "critical", "remediation": "auto"},
               "GPU 3 (GPU-3) on node n1 is not accessible to NVML.")]),
        Case("GpuLost", "15s", [(f"gpu_accessible{{{GPU}}}", "1 1 1 1 1")]),
        # After an exporter restart NVML cannot name the lost GPU; its latched fault still fires.
        Case("GpuLost", "15s", [(f'gpu_fault_pending{{{GPU},kind="lost",xid=""}}', "1 1 1 1 1")],
             [({**GPU_LABELS, "severity": "critical", "remediation": "auto"},
               "GPU 3 (GPU-3) on node n1 is not accessible to NVML.")]),
        Case("GpuEccUncorrectable", "5m", [(f"gpu_ecc_uncorrected_errors_total{{{GPU}}}", "0 0 0 1 1 1")],
             [({**GPU_LABELS, "severity": "critical", "remediation": "auto"},
               "GPU 3 (GPU-3) on node n1 had 1 uncorrectable ECC errors in 10 minutes.")], interval="1m"),
        Case("GpuEccUncorrectable", "5m", [(f"gpu_ecc_uncorrected_errors_total{{{GPU}}}", "2 2 2 2 2 2")],
             interval="1m"),
        Case("GpuRowRemapFailure", "10s", [(f"gpu_row_remap_failed{{{GPU}}}", "0 1 1")],
             [({**GPU_LABELS, "severity": "critical", "remediation": "auto"},
               "GPU 3 (GPU-3) on node n1 reports a row-remap failure.")]),
        Case("GpuRowRemapFailure", "10s", [(f"gpu_row_remap_failed{{{GPU}}}", "0 0 0")]),
        Case("GpuRowRemapPending", "6m", [(f"gpu_row_remap_pending{{{GPU}}}", "1x100")],
             [({**GPU_LABELS, "severity": "warning"},
               "GPU 3 (GPU-3) on node n1 needs a reset to apply a pending row remap.")]),
        Case("GpuRowRemapPending", "4m", [(f"gpu_row_remap_pending{{{GPU}}}", "1x100")]),
        Case("GpuRecoveryActionRequired", "10s", [(f"gpu_recovery_action{{{GPU}}}", "0 2 2")],
             [({**GPU_LABELS, "severity": "critical", "remediation": "auto", "recovery_action": "2"},
               "GPU 3 (GPU-3) on node n1 asks for recovery action 2 (1 GPU reset, 2 node reboot, 3 drain P2P, "
               "4 drain and reset).")]),
        Case("GpuRecoveryActionRequired", "10s", [(f"gpu_recovery_action{{{GPU}}}", "0 0 0")]),
        Case("GpuThermalSlowdown", "3m", [(f'gpu_clock_event_active{{{GPU},reason="hw_thermal"}}', "1x60")],
             [({**GPU_LABELS, "severity": "warning"}, "GPU 3 (GPU-3) on node n1 is thermally throttled.")]),
        Case("GpuThermalSlowdown", "3m", [(f'gpu_clock_event_active{{{GPU},reason="sw_power_cap"}}', "1x60")]),
        Case("GpuPowerBrake", "2m", [(f'gpu_clock_event_active{{{GPU},reason="hw_power_brake"}}', "1x60")],
             [({**GPU_LABELS, "severity": "warning"},
               "GPU 3 (GPU-3) on node n1 has the hardware power brake active.")]),
        Case("GpuPowerBrake", "30s", [(f'gpu_clock_event_active{{{GPU},reason="hw_power_brake"}}', "1x60")]),
        Case("GpuTemperatureHigh", "6m", [(f"gpu_temperature_celsius{{{GPU}}}", "95x100")],
             [({**GPU_LABELS, "severity": "warning"}, "GPU 3 (GPU-3) on node n1 is at 95 °C.")]),
        Case("GpuTemperatureHigh", "6m", [(f"gpu_temperature_celsius{{{GPU}}}", "70x100")]),
        Case("GpuNvlinkErrors", "20m",
             [(f'gpu_nvlink_errors_total{{{GPU},link="0",error="crc_flit"}}', "0+600x30")],
             [({**GPU_LABELS, "severity": "warning"}, "GPU 3 (GPU-3) on node n1 sees 10 NVLink errors per second.")],
             interval="1m"),
        Case("GpuNvlinkErrors", "20m", [(f'gpu_nvlink_errors_total{{{GPU},link="0",error="crc_flit"}}', "0+6x30")],
             interval="1m"),
        Case("GpuExporterDown", "3m", [(f"up{{{GPU.split(',gpu=')[0]}}}", "0x60")],
             [({"job": "vigil-gpu-exporter", "instance": "10.0.0.1:9835", "node": "n1", "severity": "critical"},
               "The GPU exporter 10.0.0.1:9835 on node n1 has been down for 2 minutes.")]),
        Case("GpuExporterDown", "3m", [(f"up{{{GPU.split(',gpu=')[0]}}}", "1x60")]),
        Case("GpuExporterNvmlDown", "6m", [(f"gpu_exporter_nvml_up{{{GPU.split(',gpu=')[0]}}}", "0x100")],
             [({"job": "vigil-gpu-exporter", "instance": "10.0.0.1:9835", "node": "n1", "severity": "warning"},
               "The GPU exporter on node n1 reports NVML unavailable.")]),
        Case("GpuExporterNvmlDown", "6m", [(f"gpu_exporter_nvml_up{{{GPU.split(',gpu=')[0]}}}", "1x100")]),
        Case("GpuExporterCollectFailing", "6m",
             [(f"gpu_exporter_last_collect_success{{{GPU.split(',gpu=')[0]}}}", "0x100")],
             [({"job": "vigil-gpu-exporter", "instance": "10.0.0.1:9835", "node": "n1", "severity": "warning"},
               "NVML collections on node n1 have failed for 5 minutes.")]),
        Case("GpuExporterCollectFailing", "6m",
             [(f"gpu_exporter_last_collect_success{{{GPU.split(',gpu=')[0]}}}", "1x100")]),
    ]
    pod = f'{SVC},pod="llm-0",node="n1"'
    service = [
        Case("InferenceEndpointDown", "2m", [(f"probe_success{{{pod}}}", "0x30")],
             [({"namespace": "ml", "service": "llm", "pod": "llm-0", "node": "n1", "zone": "zone-a",
                "severity": "critical", "remediation": "auto"},
               "Pod ml/llm-0 of service llm on node n1 has failed its probe for 1 minute.")]),
        Case("InferenceEndpointDown", "2m", [(f"probe_success{{{pod}}}", "1x30")]),
        Case("InferenceServiceDegraded", "3m",
             [(f'probe_success{{{SVC},pod="llm-0",node="n1"}}', "0x30"),
              (f'probe_success{{{SVC},pod="llm-1",node="n2"}}', "1x30")],
             [({"namespace": "ml", "service": "llm", "severity": "warning"},
               "50% of the endpoints of ml/llm fail their probes.")]),
        Case("InferenceServiceDegraded", "3m",
             [(f'probe_success{{{SVC},pod="llm-0",node="n1"}}', "1x30"),
              (f'probe_success{{{SVC},pod="llm-1",node="n2"}}', "1x30")]),
        *_burn("InferenceAvailabilityBudgetBurn", "", "service_probe_duration_seconds_count", None, "failed probes"),
        *_burn("InferenceLatencyBudgetBurn", "service_probe_duration_seconds_bucket",
               "service_probe_duration_seconds_count", "2.5", "probes slower than 2.5 s"),
        *_burn("InferenceTtftBudgetBurn", "service_probe_time_to_first_token_seconds_bucket",
               "service_probe_time_to_first_token_seconds_count", "1.0", "time to first token over 1.0 s"),
    ]
    pipeline = [
        Case("Watchdog", "1m", [], [({"severity": "info"},
                                     "Always firing, from map[]; its absence at the dead man's switch means the "
                                     "pipeline is broken.")]),
        Case("VigilTargetDown", "11m", [('up{job="x",namespace="a",instance="1"}', "0x100"),
                                        ('up{job="x",namespace="a",instance="2"}', "1x100")],
             [({"job": "x", "namespace": "a", "severity": "warning"}, "50% of the x targets are down.")],
             interval="1m"),
        Case("VigilTargetDown", "11m", [('up{job="x",namespace="a",instance="1"}', "1x100")], interval="1m"),
        Case("VigilRemediatorDown", "6m", [(f"up{{{REM}}}", "0x100")],
             [({"severity": "critical"}, "No healthy remediator has been scraped for 5 minutes.")], interval="1m"),
        Case("VigilRemediatorDown", "6m", [(f"up{{{REM}}}", "1x100")], interval="1m"),
        Case("VigilBreakerOpen", "1m", [(f"vigil_breaker_open{{{REM}}}", "1x10")],
             [({"job": "vigil-remediator", "severity": "critical"},
               "The circuit breaker of vigil-remediator is open: automatic actions are stopped.")], interval="1m"),
        Case("VigilBreakerOpen", "1m", [(f"vigil_breaker_open{{{REM}}}", "0x10")], interval="1m"),
        Case("VigilActionsFailing", "10m",
             [(f'vigil_actions_total{{{REM},action="drain_node",result="failed"}}', "0 0 0 1 1 1 1 1 1 1 1")],
             [({"job": "vigil-remediator", "action": "drain_node", "severity": "warning"},
               "1 drain_node actions failed in 15 minutes.")], interval="1m"),
        Case("VigilActionsFailing", "10m",
             [(f'vigil_actions_total{{{REM},action="drain_node",result="succeeded"}}', "0+1x10")], interval="1m"),
        Case("VigilVerificationFailing", "10m",
             [(f'vigil_verifications_total{{{REM},action="restart_pod",result="failed"}}', "0 0 0 1 1 1 1 1 1 1 1")],
             [({"job": "vigil-remediator", "action": "restart_pod", "severity": "warning"},
               "1 restart_pod actions were not verified in 30 minutes.")], interval="1m"),
        Case("VigilVerificationFailing", "10m",
             [(f'vigil_verifications_total{{{REM},action="restart_pod",result="verified"}}', "0+1x10")],
             interval="1m"),
        Case("VigilVerificationUnknown", "10m",
             [(f'vigil_verifications_total{{{REM},action="restart_pod",result="unverifiable"}}',
               "0 0 0 1 1 1 1 1 1 1 1")],
             [({"job": "vigil-remediator", "action": "restart_pod", "severity": "warning"},
               "1 restart_pod actions stayed unverifiable in 30 minutes.")], interval="1m"),
        Case("VigilVerificationUnknown", "10m",
             [(f'vigil_verifications_total{{{REM},action="restart_pod",result="failed"}}', "0 0 0 1 1 1 1 1 1 1 1")],
             interval="1m"),
        Case("VigilRemediationQueueStuck", "10m", [(f"vigil_oldest_waiting_seconds{{{REM}}}", "3600+60x30")],
             [({"job": "vigil-remediator", "severity": "warning"},
               "The oldest waiting incident of vigil-remediator has waited 1h 10m 0s.")], interval="1m"),
        Case("VigilRemediationQueueStuck", "10m", [(f"vigil_oldest_waiting_seconds{{{REM}}}", "0x20")],
             interval="1m"),
        Case("VigilIncidentsStuck", "16m", [(f'vigil_incidents{{{REM},status="acting"}}', "2x30")],
             [({"job": "vigil-remediator", "severity": "warning"},
               "2 incidents have been pending or acting for 15 minutes.")], interval="1m"),
        Case("VigilIncidentsStuck", "16m", [(f'vigil_incidents{{{REM},status="acting"}}', "0x30")], interval="1m"),
        Case("VigilDrainBlocked", "10m", [(f'vigil_blocked_total{{{REM},reason="pdb"}}', "0 0 0 1 1 1 1 1 1 1 1")],
             [({"job": "vigil-remediator", "severity": "warning"},
               "1 drains were blocked by a PodDisruptionBudget in 30 minutes.")], interval="1m"),
        Case("VigilDrainBlocked", "10m", [(f'vigil_blocked_total{{{REM},reason="budget"}}', "0 0 0 1 1 1 1 1 1 1 1")],
             interval="1m"),
        Case("VigilIncidentErrors", "10m",
             [(f'vigil_incident_errors_total{{{REM},stage="decide"}}', "0 0 0 1 1 1 1 1 1 1 1")],
             [({"job": "vigil-remediator", "stage": "decide", "severity": "warning"},
               "1 incidents failed in stage decide in 15 minutes.")], interval="1m"),
        Case("VigilIncidentErrors", "10m", [(f'vigil_incident_errors_total{{{REM},stage="decide"}}', "0x10")],
             interval="1m"),
        Case("VigilRepairExhausted", "10m", [(f"vigil_repairs_exhausted_total{{{REM}}}", "0 0 0 1 1 1 1 1 1 1 1")],
             [({"job": "vigil-remediator", "severity": "warning"},
               "1 repairs were refused in 6 hours because the node or GPU was repaired too often.")],
             interval="1m"),
        Case("VigilRepairExhausted", "10m", [(f"vigil_repairs_exhausted_total{{{REM}}}", "2x10")], interval="1m"),
        Case("VigilAlertsTruncated", "10m", [(f"vigil_truncated_alerts_total{{{REM}}}", "0 0 0 5 5 5 5 5 5 5 5")],
             [({"job": "vigil-remediator", "severity": "warning"},
               "5 alerts were left out of webhooks (max_alerts).")], interval="1m"),
        Case("VigilAlertsTruncated", "10m", [(f"vigil_truncated_alerts_total{{{REM}}}", "5x10")], interval="1m"),
    ]
    return {"gpu.yml": gpu, "service.yml": service, "vigil.yml": pipeline}


def render(rule_file: str, case_list: list[Case], annotations: dict[str, tuple[str, str]]) -> dict:
    """A promtool test file; `annotations` maps alertname -> (summary, runbook_url)."""
    tests = []
    for c in case_list:
        summary, runbook = annotations[c.alert]
        tests.append({
            "name": f"{c.alert} {'fires' if c.expect else 'does not fire'} at {c.eval_time}",
            "interval": c.interval,
            "input_series": [{"series": s, "values": v} for s, v in c.series],
            "alert_rule_test": [{"eval_time": c.eval_time, "alertname": c.alert, "exp_alerts": [
                {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": desc,
                                                           "runbook_url": runbook}}
                for labels, desc in c.expect]}],
        })
    return {"rule_files": [f"../rules/{rule_file}"], "evaluation_interval": "5s", "tests": tests}
