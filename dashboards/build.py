"""Vigil's Grafana dashboards as code, written to `dashboards/json/` (provisioned), with an import
variant in `dashboards/export/` and the provisioning files.

    python -m dashboards.build           # write the files (`make dashboards`)
    python -m dashboards.build --check   # exit 1 if a committed file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from dashboards.model import Dashboard, Panel, Row, Target, Variable, export_variant
from vigil_common import topology, xid
from vigil_common.generated import write_or_check
from vigil_common.runbooks import RUNBOOK_BASE

ROOT = Path(__file__).resolve().parent
# The signal catalog owns the runbook location and the XID classes; the rules and the panels follow it.
RUNBOOKS = RUNBOOK_BASE
CRITICAL_XIDS = xid.pattern(xid.NODE_ACTION)
GPU = 'job="vigil-gpu-exporter", node=~"$node"'
SVC = 'job="vigil-service-exporter", namespace=~"$namespace", service=~"$service"'
REM = 'job="vigil-remediator"'
RED_AT = [(None, "green"), (1, "red")]
DOMAIN_WINDOW = 600  # seconds a fatal SXid makes its node a faulty member (as the alert rules' xid_window)


def links(current: str) -> list[dict]:
    return [{"title": "Vigil dashboards", "type": "dashboards", "tags": ["vigil"], "asDropdown": True,
             "includeVars": False, "keepTime": True, "targetBlank": False, "icon": "external link"},
            {"title": "Runbooks", "type": "link", "url": f"{RUNBOOKS}/", "icon": "doc", "targetBlank": True,
             "tooltip": f"What Vigil's alerts on the {current} dashboard mean and what to do", "tags": []}]


def runbook(alert: str) -> list[dict]:
    return [{"title": f"Runbook: {alert}", "url": f"{RUNBOOKS}/{alert}.md", "targetBlank": True}]


def ts(title: str, desc: str, *targets: Target, unit: str = "short", **kw) -> Panel:
    return Panel("timeseries", title, desc, list(targets), unit=unit, **kw)


def stat(title: str, desc: str, expr: str, unit: str = "short", **kw) -> Panel:
    return Panel("stat", title, desc, [Target(expr, instant=True)], unit=unit, w=kw.pop("w", 4), h=kw.pop("h", 4),
                 **kw)


def gpu_fleet() -> Dashboard:
    return Dashboard("vigil-gpu-fleet", "Vigil / GPU fleet",
                     "Health at a glance for every GPU Vigil watches: accessibility, XIDs, ECC and row remapping, "
                     "throttling, and the load on the fleet.", [
        Row("Health at a glance", [
            stat("GPUs accessible", "GPUs NVML can read (gpu_accessible 1).", f"sum(gpu_accessible{{{GPU}}})"),
            stat("GPUs lost", "GPUs that fell off the bus or need a reset.", f"count(gpu_accessible{{{GPU}}} == 0) "
                 "or vector(0)", thresholds=RED_AT, links=runbook("GpuLost")),
            stat("Critical XIDs (1h)", "XIDs that need a drain, reset or reboot, in the last hour.",
                 f'sum(max without (source) (increase(gpu_xid_errors_total{{{GPU}, xid=~"{CRITICAL_XIDS}"}}[1h]))) '
                 "or vector(0)",
                 thresholds=RED_AT, links=runbook("GpuXidCritical")),
            stat("Row remaps pending", "GPUs that need a reset to apply a row remap.",
                 f"sum(gpu_row_remap_pending{{{GPU}}}) or vector(0)", thresholds=[(None, "green"), (1, "orange")]),
            stat("Nodes with NVML down", "GPU exporters that cannot use NVML.",
                 f"count(gpu_exporter_nvml_up{{{GPU}}} == 0) or vector(0)", thresholds=RED_AT,
                 links=runbook("GpuExporterNvmlDown")),
            stat("Exporters up", "GPU exporters Prometheus scrapes.", f"sum(up{{{GPU}}})"),
        ]),
        Row("Errors", [
            ts("XID events by code", "XID errors per code across the fleet (NVML and the kernel log; an event "
               "both saw counts once).",
               Target(f"sum by (xid) (max without (source) (increase(gpu_xid_errors_total{{{GPU}}}"
                      "[$__rate_interval])))", "XID {{xid}}"), w=12, expect_data=False),
            ts("NVSwitch SXids", "NVSwitch SXid errors from the kernel log, by switch, code and severity.",
               Target(f"sum by (node, device, sxid, severity) (increase(gpu_nvswitch_sxid_errors_total{{{GPU}}}"
                      "[$__rate_interval])) > 0", "{{node}} {{device}} SXid {{sxid}} {{severity}}"), w=12,
               expect_data=False, links=runbook("GpuNvswitchSxidFatal")),
            ts("Uncorrectable ECC errors", "Uncorrectable (double-bit) ECC errors per GPU.",
               Target(f"sum by (node, gpu) (increase(gpu_ecc_uncorrected_errors_total{{{GPU}}}[$__rate_interval]))",
                      "{{node}} GPU {{gpu}}"), w=12),
            ts("Remapped rows", "Rows remapped per node, by the error that caused it.",
               Target(f"sum by (node, cause) (gpu_remapped_rows_total{{{GPU}}})", "{{node}} {{cause}}"), w=12),
            Panel("state-timeline", "Clock throttling reasons", "Which clock-event (throttle) reasons are active.",
                  [Target(f'sum by (reason) (gpu_clock_event_active{{{GPU}, reason!="gpu_idle"}})', "{{reason}}")],
                  w=12, thresholds=[(None, "green"), (1, "orange")]),
        ]),
        Row("NVLink domains", [
            stat("NVLink domains", "NVLink partitions (gpu_fabric_info cluster_uuid.clique_id, GPU Feature "
                 "Discovery's nvidia.com/gpu.clique) of the nodes shown.",
                 f"count(count by (domain) ({topology.members(GPU)})) or vector(0)"),
            stat("Domains degraded", "NVLink domains with several faulty members at once: one domain incident "
                 "each in the remediator, not N node repairs.",
                 'count(ALERTS{alertname="GpuDomainDegraded", alertstate="firing"}) or vector(0)',
                 thresholds=RED_AT, links=runbook("GpuDomainDegraded")),
            Panel("bargauge", "Faulty members by domain", "Share of each NVLink domain's nodes with a pending GPU "
                  "fault or a recent fatal NVSwitch SXid; GpuDomainDegraded fires at 2 nodes and 25 %.",
                  [Target(f"(({topology.faulty_members(GPU, DOMAIN_WINDOW)}) or 0 * count by (domain) "
                          f"({topology.members(GPU)})) / count by (domain) ({topology.members(GPU)})",
                          "{{domain}}", instant=True)],
                  unit="percentunit", min=0, max=1, w=16, h=4,
                  thresholds=[(None, "green"), (0.01, "orange"), (0.25, "red")],
                  links=runbook("GpuDomainDegraded")),
        ]),
        Row("Load", [
            ts("GPU utilization by node", "Mean SM utilization of each node's GPUs.",
               Target(f"avg by (node) (gpu_utilization_ratio{{{GPU}}})", "{{node}}"), unit="percentunit", min=0, max=1),
            ts("Memory used by node", "Device memory used as a share of total.",
               Target(f"sum by (node) (gpu_memory_used_bytes{{{GPU}}}) / sum by (node) "
                      f"(gpu_memory_total_bytes{{{GPU}}})", "{{node}}"), unit="percentunit", min=0, max=1),
            ts("Hottest GPU by node", "The highest core temperature on each node.",
               Target(f"max by (node) (gpu_temperature_celsius{{{GPU}}})", "{{node}}"), unit="celsius",
               thresholds=[(None, "green"), (85, "orange"), (90, "red")]),
            ts("Power by node", "Board power draw per node (from the energy counter).",
               Target(f"sum by (node) (rate(gpu_energy_consumption_joules_total{{{GPU}}}[$__rate_interval]))",
                      "{{node}}"), unit="watt"),
        ]),
    ], [Variable("node", "label_values(gpu_info, node)", "Node")], links=links("GPU fleet"))


def gpu_node() -> Dashboard:
    g = f'{GPU}, gpu=~"$gpu"'
    by = "{{gpu}}"
    return Dashboard("vigil-gpu-node", "Vigil / GPU node", "Every GPU of one node in detail.", [
        Row("Identity and health", [
            Panel("table", "GPUs", "Identity of each GPU (gpu_info) on the node.",
                  [Target(f"gpu_info{{{g}}}", instant=True)], w=24, h=6,
                  options={"showHeader": True}),
            Panel("table", "Pods on each GPU", "Which pod and container the kubelet allocated each GPU to "
                  "(gpu_allocation_info, from the pod-resources API; a MIG slice or shared replica shows its parent "
                  "GPU). Empty where pod attribution is off.",
                  [Target(f"gpu_allocation_info{{{g}}}", instant=True)], w=24, h=6, options={"showHeader": True}),
            Panel("state-timeline", "Accessible", "1 while NVML can read the GPU.",
                  [Target(f"gpu_accessible{{{g}}}", by)], w=12, thresholds=[(None, "red"), (1, "green")]),
            ts("Recovery action requested", "0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset.",
               Target(f"gpu_recovery_action{{{g}}}", by), w=12, links=runbook("GpuRecoveryActionRequired")),
            Panel("table", "Pending faults", "Faults the exporter holds until a GPU reset or a reboot (an XID that "
                  "needs action, a lost GPU), with the Unix time each was first seen (gpu_fault_pending). "
                  "GpuXidCritical and GpuLost fire while they are here.",
                  [Target(f"gpu_fault_pending_since_timestamp_seconds{{{g}}}", instant=True)], w=24, h=5,
                  options={"showHeader": True}, expect_data=False, links=runbook("GpuXidCritical")),
        ]),
        Row("Load", [
            ts("Utilization", "SM utilization.", Target(f"gpu_utilization_ratio{{{g}}}", by), unit="percentunit",
               min=0, max=1),
            ts("Memory used", "Device memory used.", Target(f"gpu_memory_used_bytes{{{g}}}", by), unit="bytes"),
            ts("SM clock", "Current SM clock.", Target(f"gpu_sm_clock_hertz{{{g}}}", by), unit="hertz"),
            ts("Temperature", "Core and memory temperature.", Target(f"gpu_temperature_celsius{{{g}}}", f"core {by}"),
               Target(f"gpu_memory_temperature_celsius{{{g}}}", f"memory {by}"), unit="celsius",
               thresholds=[(None, "green"), (85, "orange"), (90, "red")]),
            ts("Power", "Power draw against the enforced limit.", Target(f"gpu_power_usage_watts{{{g}}}", by),
               Target(f"gpu_power_limit_watts{{{g}}}", f"limit {by}"), unit="watt"),
            ts("Performance state", "P-state (0 is maximum performance).",
               Target(f"gpu_performance_state{{{g}}}", by)),
        ]),
        Row("Errors", [
            ts("XIDs", "XID errors by GPU and code.",
               Target(f"max without (source) (increase(gpu_xid_errors_total{{{g}}}[$__rate_interval])) > 0",
                      "GPU {{gpu}} XID {{xid}}"),
               expect_data=False, links=runbook("GpuXidCritical")),
            ts("ECC errors", "Corrected and uncorrected ECC errors.",
               Target(f"increase(gpu_ecc_corrected_errors_total{{{g}}}[$__rate_interval])", f"corrected {by}"),
               Target(f"increase(gpu_ecc_uncorrected_errors_total{{{g}}}[$__rate_interval])", f"uncorrected {by}")),
            ts("NVLink errors", "NVLink data-link errors per second.",
               Target(f"sum by (gpu) (rate(gpu_nvlink_errors_total{{{g}}}[$__rate_interval]))", by), unit="cps",
               links=runbook("GpuNvlinkErrors")),
            ts("PCIe replays", "PCIe replays per second.",
               Target(f"rate(gpu_pcie_replay_errors_total{{{g}}}[$__rate_interval])", by), unit="cps"),
            Panel("state-timeline", "Throttling", "Active clock-event reasons.",
                  [Target(f'gpu_clock_event_active{{{g}, reason!="gpu_idle"}} == 1', "{{gpu}} {{reason}}")],
                  w=8, thresholds=[(None, "green"), (1, "orange")], expect_data=False),
            ts("Exporter collection time", "How long the exporter's NVML collection takes.",
               Target(f"gpu_exporter_collect_duration_seconds{{{GPU}}}", "{{node}}"), unit="s"),
        ]),
    ], [Variable("node", "label_values(gpu_info, node)", "Node", multi=False, include_all=False),
        Variable("gpu", 'label_values(gpu_info{node="$node"}, gpu)', "GPU")], links=links("GPU node"))


def service() -> Dashboard:
    burn = []
    for sli, what in (("probe_slow", "latency"), ("ttft_slow", "time to first token"), ("probe_errors", "errors")):
        burn.append(ts(f"Burn rate: {what}", f"How fast the {what} SLO's error budget burns (1 = exactly on "
                       "budget; the page thresholds are 14.4 over 1h and 6 over 6h).",
                       Target(f'namespace_service_zone:{sli}:ratio_rate1h{{namespace=~"$namespace", '
                              f'service=~"$service"}} / 0.01', "{{service}} {{zone}} 1h"),
                       Target(f'namespace_service_zone:{sli}:ratio_rate5m{{namespace=~"$namespace", '
                              f'service=~"$service"}} / 0.01', "{{service}} {{zone}} 5m"),
                       thresholds=[(None, "green"), (6, "orange"), (14.4, "red")],
                       links=runbook("InferenceLatencyBudgetBurn")))
    return Dashboard("vigil-service", "Vigil / Inference services",
                     "Active probes of every inference endpoint: availability, latency, time to first token, and "
                     "the SLOs' error budgets.", [
        Row("Endpoints", [
            stat("Endpoints failing", "Endpoints whose last probe failed.",
                 f"count(probe_success{{{SVC}}} == 0) or vector(0)", thresholds=RED_AT,
                 links=runbook("InferenceEndpointDown")),
            stat("Endpoints probed", "Endpoints the service exporter probes.", f"count(probe_success{{{SVC}}})"),
            Panel("gauge", "Probe success", "Share of endpoints whose last probe succeeded.",
                  [Target(f"avg(probe_success{{{SVC}}})", instant=True)], unit="percentunit", min=0, max=1, w=4, h=4,
                  thresholds=[(None, "red"), (0.9, "orange"), (0.99, "green")]),
            Panel("state-timeline", "Probe success by endpoint", "1 while the endpoint's probe succeeds.",
                  [Target(f"probe_success{{{SVC}}}", "{{service}} {{target}}")], w=12, h=4,
                  thresholds=[(None, "red"), (1, "green")]),
        ]),
        Row("Latency", [
            ts("Probe latency", "p50 and p99 of probe duration per service and zone.",
               Target(f"histogram_quantile(0.99, sum by (le, service, zone) (rate(service_probe_duration_seconds_bucket"
                      f"{{{SVC}}}[$__rate_interval])))", "p99 {{service}} {{zone}}"),
               Target(f"histogram_quantile(0.5, sum by (le, service, zone) (rate(service_probe_duration_seconds_bucket"
                      f"{{{SVC}}}[$__rate_interval])))", "p50 {{service}} {{zone}}"), unit="s", w=12),
            ts("Time to first token", "p50 and p99 of the streamed inference probes' time to first token.",
               Target("histogram_quantile(0.99, sum by (le, service, zone) (rate("
                      f"service_probe_time_to_first_token_seconds_bucket{{{SVC}}}[$__rate_interval])))",
                      "p99 {{service}} {{zone}}"),
               Target("histogram_quantile(0.5, sum by (le, service, zone) (rate("
                      f"service_probe_time_to_first_token_seconds_bucket{{{SVC}}}[$__rate_interval])))",
                      "p50 {{service}} {{zone}}"), unit="s", w=12),
            ts("Probe failures by reason", "Failed probes per second, by bounded reason.",
               Target(f"sum by (service, reason) (rate(service_probe_failures_total{{{SVC}}}[$__rate_interval]))",
                      "{{service}} {{reason}}"), unit="cps", w=24),
        ]),
        Row("SLOs", [
            *burn,
            Panel("bargauge", "Error budget left (3d)", "Share of the 99 % latency objective's budget left over "
                  "the last 3 days.",
                  [Target('clamp_min(1 - namespace_service_zone:probe_slow:ratio_rate3d{namespace=~"$namespace", '
                          'service=~"$service"} / 0.01, 0)', "{{service}} {{zone}}", instant=True)],
                  unit="percentunit", min=0, max=1, w=24, h=5,
                  thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")]),
        ]),
    ], [Variable("namespace", "label_values(probe_success, namespace)", "Namespace"),
        Variable("service", 'label_values(probe_success{namespace=~"$namespace"}, service)', "Service")],
        links=links("service"))


def remediation() -> Dashboard:
    return Dashboard("vigil-remediation", "Vigil / Remediation",
                     "What the remediator decided and did: incidents, actions, blocks and their reasons, the "
                     "breaker, the disruption budget, and how fast faults became actions.", [
        Row("State", [
            stat("Breaker", "1 while the circuit breaker is open: no automatic action.",
                 f"max(vigil_breaker_open{{{REM}}})", thresholds=RED_AT, links=runbook("VigilBreakerOpen")),
            stat("Paused", "1 while remediation is paused globally.", f"max(vigil_paused{{{REM}}})",
                 thresholds=[(None, "green"), (1, "orange")]),
            Panel("gauge", "Disruption budget in use", "Nodes out of service at the last check against the "
                  "nodes the budget allows.",
                  [Target(f"max(vigil_disruption_budget_nodes_in_use{{{REM}}}) / "
                          f"max(vigil_disruption_budget_nodes_allowed{{{REM}}})", instant=True)],
                  unit="percentunit", min=0, max=1, w=4, h=4,
                  thresholds=[(None, "green"), (0.75, "orange"), (1, "red")], expect_data=False),
            Panel("bargauge", "Incidents by status", "Incidents in the ledger by status.",
                  [Target(f"sum by (status) (vigil_incidents{{{REM}}})", "{{status}}", instant=True)],
                  w=12, h=4),
        ]),
        Row("Actions", [
            ts("Actions by type and result", "Actions taken (or would have been, in dry-run).",
               Target(f"sum by (action, result) (increase(vigil_actions_total{{{REM}}}[$__rate_interval])) > 0",
                      "{{action}} {{result}}"), w=12),
            ts("Blocked by reason", "Incidents and actions the safety rails stopped, by reason.",
               Target(f"sum by (reason) (increase(vigil_blocked_total{{{REM}}}[$__rate_interval])) > 0",
                      "{{reason}}"), w=12, expect_data=False, links=runbook("VigilDrainBlocked")),
            ts("Fault -> action", "Seconds from the alert's startsAt to the action taking effect (p50, p99).",
               Target("histogram_quantile(0.5, sum by (le) (rate(vigil_action_delay_seconds_bucket"
                      f"{{{REM}}}[$__rate_interval])))", "p50"),
               Target("histogram_quantile(0.99, sum by (le) (rate(vigil_action_delay_seconds_bucket"
                      f"{{{REM}}}[$__rate_interval])))", "p99"), unit="s", w=12, expect_data=False),
            ts("Verifications and escalations", "Post-action verifications by result, and escalation steps.",
               Target(f"sum by (result) (increase(vigil_verifications_total{{{REM}}}[$__rate_interval]))",
                      "verify {{result}}"),
               Target(f"sum by (action) (increase(vigil_escalations_total{{{REM}}}[$__rate_interval]))",
                      "escalate {{action}}"), w=12, expect_data=False, links=runbook("VigilVerificationFailing")),
        ]),
        Row("Intake", [
            ts("Webhooks by status code", "Alertmanager webhook requests by HTTP status.",
               Target(f"sum by (code) (rate(vigil_webhook_requests_total{{{REM}}}[$__rate_interval]))", "{{code}}"),
               unit="reqps"),
            ts("Dedupe hits", "Notifications of incidents already in the ledger (repeats, retries, HA peers).",
               Target(f"sum(rate(vigil_dedupe_hits_total{{{REM}}}[$__rate_interval]))", "dedupe"), unit="reqps"),
            ts("Fast-path pushes", "GPU exporters' pushes to Alertmanager, by result.",
               Target('sum by (result) (rate(gpu_exporter_alert_pushes_total{job="vigil-gpu-exporter"}'
                      '[$__rate_interval]))', "{{result}}"), unit="reqps", expect_data=False),
        ]),
    ], links=links("remediation"))


DASHBOARDS = {"gpu-fleet": gpu_fleet, "gpu-node": gpu_node, "service": service, "remediation": remediation}


def outputs() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name, make in DASHBOARDS.items():
        d = make().to_json()
        files[ROOT / "json" / f"{name}.json"] = json.dumps(d, indent=2, sort_keys=True) + "\n"
        files[ROOT / "export" / f"{name}.json"] = json.dumps(export_variant(d), indent=2, sort_keys=True) + "\n"
    files[ROOT / "provisioning/dashboards/vigil.yaml"] = yaml.safe_dump({
        "apiVersion": 1, "providers": [{
            "name": "vigil", "orgId": 1, "folder": "Vigil", "type": "file", "disableDeletion": True,
            "updateIntervalSeconds": 60, "allowUiUpdates": False,
            "options": {"path": "/var/lib/grafana/dashboards/vigil", "foldersFromFilesStructure": False}}]},
        sort_keys=False)
    files[ROOT / "provisioning/datasources/prometheus.yaml"] = yaml.safe_dump({
        "apiVersion": 1, "datasources": [{
            "name": "Prometheus", "type": "prometheus", "uid": "vigil-prometheus", "access": "proxy",
            "url": "http://prometheus:9090", "isDefault": True, "editable": False,
            "jsonData": {"httpMethod": "POST", "timeInterval": "5s"}}]}, sort_keys=False)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards.build")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    return write_or_check(outputs(), ROOT.parent, check=args.check, target="dashboards")


if __name__ == "__main__":
    sys.exit(main())
