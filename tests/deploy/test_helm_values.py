"""The chart's values as a platform team uses them: a closed schema (a typo fails), remediator.config typed
at render time, the dcgm-exporter / kube-prometheus-stack set per component, monitors that cannot be
invalid, the GPU exporter's own namespace, repair opt-ins, and the rules beside kube-prometheus-stack."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.helm import CHART, KPS_VALUES, REPO, pod_templates, render_chart
from tests.k8s import bins

COMPONENTS = {"gpuExporter": "vigil-gpu-exporter", "serviceExporter": "vigil-service-exporter",
              "remediator": "vigil-remediator"}


def _fails(*args: str) -> str:
    r = subprocess.run([str(bins.helm()), *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode != 0, r.stdout[-500:]
    return r.stdout + r.stderr


def _template_fails(**sets: object) -> str:
    args = ["template", "vigil", str(CHART)]
    for k, v in sets.items():
        args += ["--set", f"{k.replace('__', '.')}={str(v).lower() if isinstance(v, bool) else v}"]
    return _fails(*args)


@pytest.mark.parametrize("command", ["lint", "template"])
def test_a_typo_in_values_fails(command):
    args = [command, "deploy/helm/vigil", "--set", "prometheusOperator.enabeld=true"]
    if command == "template":
        args.insert(1, "vigil")
    out = _fails(*args)
    assert "additional properties 'enabeld' not allowed" in out, out


@pytest.mark.parametrize(("sets", "message"), [
    ({"remediator__config__safety__dry_run": "yes"}, "/remediator/config/safety/dry_run"),
    ({"remediator__config__safety__max_alert_age": "1.5h"}, "/remediator/config/safety/max_alert_age"),
    ({"remediator__config__safety__budget__max_percent": 150}, "/remediator/config/safety/budget/max_percent"),
    ({"remediator__config__safety__dryrun": True}, "additional properties 'dryrun' not allowed"),
    ({"remediator__config__prometheus__url": "prometheus:9090"}, "/remediator/config/prometheus/url"),
])
def test_remediator_config_is_checked_at_render_time(sets, message):
    """What would crash-loop the pod (`dry_run: yes`, a duration Prometheus would not parse) fails the
    render, naming the key; the same keys and types as `remediator check-config`."""
    assert message in _template_fails(**sets)


def _pod(objs: list[dict], component: str) -> dict:
    return pod_templates(objs)[COMPONENTS[component]]


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_every_component_takes_the_scheduling_and_pod_values(component, tmp_path):
    extra = {
        "nodeSelector": {"pool": "ops"}, "tolerations": [{"key": "ops", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}]}}},
        "priorityClassName": "ops-critical", "podLabels": {"team": "gpu"}, "podAnnotations": {"a": "b"},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    if component != "gpuExporter":
        extra["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": "arn:x"}}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({component: extra}))
    objs = render_chart(values)
    template = _pod(objs, component)
    spec, container = template["spec"], template["spec"]["containers"][0]
    assert spec["nodeSelector"].items() >= extra["nodeSelector"].items()  # Helm merges maps with the defaults
    for key in ("tolerations", "affinity", "priorityClassName"):
        assert spec[key] == extra[key], key
    assert template["metadata"]["labels"]["team"] == "gpu" and template["metadata"]["annotations"]["a"] == "b"
    assert template["metadata"]["labels"]["app"] == COMPONENTS[component]  # the selector labels stay
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert extra["extraVolumes"][0] in spec["volumes"] and extra["extraVolumeMounts"][0] in container["volumeMounts"]
    assert container["resources"]["requests"] == extra["resources"]["requests"]  # (limits: merged with the defaults)
    if component != "gpuExporter":
        sa = next(o for o in objs if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == COMPONENTS[component])
        assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:x"}


def test_the_remediators_default_affinity_stays_unless_replaced():
    default = _pod(render_chart(), "remediator")["spec"]["affinity"]
    assert set(default) == {"nodeAffinity", "podAntiAffinity"}
    assert "nodeSelector" not in _pod(render_chart(), "remediator")["spec"]


@pytest.mark.parametrize(("value", "expected"), [("nvidia", "nvidia"), ("", None), ("nvidia-cdi", "nvidia-cdi")])
def test_runtime_class_is_a_value_and_empty_means_none(value, expected):
    spec = _pod(render_chart(gpuExporter__runtimeClassName=value), "gpuExporter")["spec"]
    assert spec.get("runtimeClassName") == expected


def _monitors(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] in ("PodMonitor", "ServiceMonitor")}


def test_monitors_take_relabelings_metric_relabelings_honor_labels_and_timing(tmp_path):
    values = tmp_path / "values.yaml"
    drop = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "go_.*"}]
    values.write_text(yaml.safe_dump({"prometheusOperator": {"enabled": True, "monitors": {
        "gpuExporter": {"interval": "2s", "scrapeTimeout": "", "honorLabels": True, "metricRelabelings": drop,
                        "relabelings": [{"targetLabel": "cluster", "replacement": "prod"}]},
        "serviceExporter": {"interval": "30s", "scrapeTimeout": "10s"},
        "remediator": {"interval": "1m", "scrapeTimeout": "1m"}}}}))
    mons = _monitors(render_chart(values))
    gpu = mons["vigil-gpu-exporter"]["spec"]["podMetricsEndpoints"][0]
    assert gpu["interval"] == "2s" and "scrapeTimeout" not in gpu and gpu["honorLabels"] is True  # under 4s: valid
    assert gpu["metricRelabelings"] == drop
    assert gpu["relabelings"][-1] == {"targetLabel": "cluster", "replacement": "prod"}
    assert gpu["relabelings"][0]["targetLabel"] == "node"  # the chart's own first
    svc = mons["vigil-service-exporter"]["spec"]["endpoints"][0]
    assert (svc["interval"], svc["scrapeTimeout"], svc["honorLabels"]) == ("30s", "10s", True)
    rem = mons["vigil-remediator"]["spec"]["endpoints"][0]
    assert (rem["interval"], rem["scrapeTimeout"]) == ("1m", "1m") and "honorLabels" not in rem


@pytest.mark.parametrize(("interval", "timeout"), [("2s", "4s"), ("1m", "1m30s"), ("500ms", "1s")])
def test_a_scrape_timeout_longer_than_its_interval_fails_the_render(interval, timeout):
    out = _template_fails(prometheusOperator__enabled=True,
                          prometheusOperator__monitors__gpuExporter__interval=interval,
                          prometheusOperator__monitors__gpuExporter__scrapeTimeout=timeout)
    assert f"prometheusOperator.monitors.gpuExporter.scrapeTimeout {timeout} is longer than its interval" in out


SPLIT = {"gpuExporter__namespace__name": "vigil-gpu", "gpuExporter__namespace__create": True,
         "gpuExporter__kernelLog__enabled": True, "gpuExporter__podResources__enabled": True,
         "prometheusOperator__enabled": True, "namespace__create": True}


def test_the_gpu_exporter_runs_in_its_own_privileged_namespace_and_the_rest_stays_restricted():
    objs = render_chart(**SPLIT)
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
                  for o in objs if o["kind"] == "Namespace"}
    assert namespaces == {"vigil": "restricted", "vigil-gpu": "privileged"}
    where = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("namespace") for o in objs}
    assert where[("DaemonSet", "vigil-gpu-exporter")] == "vigil-gpu"
    assert where[("PodMonitor", "vigil-gpu-exporter")] == "vigil-gpu"
    for name in ("vigil-remediator", "vigil-service-exporter"):
        assert where[("Deployment", name)] == "vigil"
    assert "gpuExporter.namespace.create needs gpuExporter.namespace.name" in _template_fails(
        gpuExporter__namespace__create=True)


REPAIR_COMPONENTS = {"jobs": "repair-jobs", "medik8s": "repair-medik8s", "clusterApi": "repair-cluster-api",
                     "karpenter": "repair-karpenter"}


def _rbac(objs: list[dict]) -> dict[tuple[str, str], list]:
    return {(o["kind"], o["metadata"].get("namespace", "")): o["rules"] for o in objs
            if o["kind"] in ("Role", "ClusterRole") and "repair" not in o["metadata"]["name"]
            and o["metadata"]["name"].endswith(("-jobs", "-medik8s", "-cluster-api", "-karpenter"))}


@pytest.mark.parametrize("action", sorted(REPAIR_COMPONENTS))
def test_each_repair_opt_in_grants_what_its_kustomize_component_grants(action):
    others = {k: False for k in REPAIR_COMPONENTS if k != action}
    objs = render_chart(repair__enabled=True, **{f"repair__{k}": v for k, v in {**others, action: True}.items()})
    component = REPO / "deploy/components" / REPAIR_COMPONENTS[action] / "rbac.yaml"
    want = [o for o in yaml.safe_load_all(component.read_text()) if o and o["kind"] in ("Role", "ClusterRole")]
    got = [o for o in objs if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"] != "vigil-remediator"
           and o["metadata"]["name"].startswith("vigil-remediator-")]
    assert [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"), o["rules"]) for o in got] == [
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"), o["rules"]) for o in want]
    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
                and o["metadata"]["name"] == got[0]["metadata"]["name"]]
    assert bindings[0]["subjects"] == [{"kind": "ServiceAccount", "name": "vigil-remediator", "namespace": "vigil"}]
    ns = [o for o in objs if o["kind"] == "Namespace"]
    assert [(n["metadata"]["name"], n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]) for n in ns] == [
        ("vigil-repair", "privileged")]


def test_no_repair_rbac_by_default_and_a_repair_config_without_it_fails():
    objs = render_chart()
    assert not [o for o in objs if "repair" in o["metadata"]["name"] or o["kind"] == "Namespace"]
    assert "remediator.config.repair is set but repair.enabled is false" in _template_fails(
        remediator__config__repair__namespace="vigil-repair")
    assert 'remediator.config.repair.namespace "elsewhere" differs from repair.namespace.name' in _template_fails(
        repair__enabled=True, remediator__config__repair__namespace="elsewhere")


def _rules(objs: list[dict]) -> dict[str, dict]:
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    return {r.get("alert") or r["record"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_beside_kube_prometheus_stack_no_watchdog_and_target_down_covers_vigils_jobs_only():
    rules = _rules(render_chart(KPS_VALUES))
    assert "Watchdog" not in rules
    assert rules["VigilTargetDown"]["expr"] == ('100 * (count by (job, namespace) (up{job=~"vigil-.+"} == 0) / '
                                                'count by (job, namespace) (up{job=~"vigil-.+"})) > 10')
    committed = yaml.safe_load((REPO / "deploy/prometheus-operator/prometheusrule.yaml").read_text())
    generated = {r.get("alert") or r["record"] for g in committed["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == generated - {"Watchdog"}


def test_rules_can_be_disabled_one_by_one_and_labelled(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"prometheusOperator": {"enabled": True, "rules": {
        "disabled": ["GpuXidMemoryRecoverable"], "additionalRuleLabels": {"team": "gpu-platform", "severity": "x"},
        "watchdog": True, "targetDown": "off"}}}))
    rules = _rules(render_chart(values))
    assert "GpuXidMemoryRecoverable" not in rules and "VigilTargetDown" not in rules and "Watchdog" in rules
    alerts = [r for r in rules.values() if "alert" in r]
    assert all(r["labels"]["team"] == "gpu-platform" for r in alerts)
    assert rules["GpuXidCritical"]["labels"]["severity"] == "critical"  # a rule's own label wins
    assert not any("team" in r.get("labels", {}) for r in rules.values() if "record" in r)


def test_a_notifications_receiver_must_be_one_of_the_receivers():
    assert 'alertmanagerConfig.notificationsReceiver "slack"' in _template_fails(
        alertmanagerConfig__enabled=True, alertmanagerConfig__notificationsReceiver="slack")


def _closed_objects(schema: dict, path: tuple[str, ...] = ()):
    """(path, property names) of every closed object in a schema, depth first."""
    if schema.get("type") == "object" and schema.get("additionalProperties") is False:
        yield path, set(schema["properties"])
    for key, sub in schema.get("properties", {}).items():
        yield from _closed_objects(sub, (*path, key))


def _known_keys(path: tuple[str, ...]) -> set[str]:
    """The keys `remediator check-config` knows at `path`, from its own unknown-key error."""
    from remediator.config import parse_config
    from vigil_common.config import collecting

    data: dict = {"safety": {"budget": {"pools": {"label": "pool"}}}}  # pools are read only with a label
    node = data
    for key in path:
        node = node.setdefault(key, {})
    node["zz_unknown"] = 1
    with collecting() as found:
        parse_config(data, "vigil.yaml")
    (err,) = [str(e) for e in found.errors if "unknown key 'zz_unknown'" in str(e)]
    return set(err.split("(known: ", 1)[1].rstrip(")").split(", "))


def test_the_schema_of_remediator_config_has_the_keys_check_config_has():
    """values.schema.json types remediator.config by hand; this holds each of its closed sections to the keys
    the remediator's own parser knows, so the two cannot drift apart."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())["properties"]["remediator"]
    sections = dict(_closed_objects(schema["properties"]["config"]))
    assert len(sections) >= 9, sorted(sections)
    for path, keys in sections.items():
        assert keys == _known_keys(path), path


def test_the_example_vigil_yaml_passes_the_charts_schema(tmp_path):
    example = yaml.safe_load((REPO / "remediator/examples/vigil.yaml").read_text())
    for key in ("server", "auth", "ledger"):  # the chart's own
        example.pop(key)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"remediator": {"config": example}, "repair": {"enabled": True}}))
    cfg = yaml.safe_load(next(o for o in render_chart(values) if o["metadata"]["name"] == "vigil-remediator-config")[
        "data"]["vigil.yaml"])
    assert cfg["repair"] == example["repair"] and cfg["policy"] == example["policy"]
