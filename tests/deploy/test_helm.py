"""The Helm chart: lint, template (default values and kube-prometheus-stack's), agreement with kustomize,
an AlertmanagerConfig equal to the shipped routing, and a server-side dry-run on the local apiserver."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.deploy.helm import (
    KPS_VALUES,
    REPO,
    helm,
    install_operator_crds,
    normalized,
    render_chart,
    render_kustomize,
)
from tests.k8s import bins


def _by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("values", [[], [KPS_VALUES]], ids=["default", "kube-prometheus-stack"])
def test_helm_lint_strict(values):
    args = [str(bins.helm()), "lint", "--strict", "deploy/helm/vigil"] + [a for v in values for a in ("-f", str(v))]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout


LEASE_RULE = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
LEDGER_RULE = {"apiGroups": ["vigil.io"], "resources": ["vigilincidents", "vigilstates"],
               "verbs": ["get", "list", "watch", "create", "update", "delete"]}
CRDS = {("CustomResourceDefinition", "vigilincidents.vigil.io"), ("CustomResourceDefinition", "vigilstates.vigil.io")}
# The chart's default backend is deploy/base's (kubernetes); sqlite is deploy/overlays/sqlite.
LAYOUTS = {"kubernetes": "deploy/base", "sqlite": "deploy/overlays/sqlite"}


def _kustomize_with_operator(overlay: str) -> list[dict]:
    """A kustomize layout plus the operator objects of deploy/prometheus-operator (which builds on deploy/base)."""
    operator = [o for f in ("monitors.yaml", "prometheusrule.yaml")
                for o in yaml.safe_load_all((REPO / "deploy/prometheus-operator" / f).read_text()) if o]
    return render_kustomize(overlay) + operator


@pytest.mark.parametrize("backend", sorted(LAYOUTS))
def test_chart_and_kustomize_agree_on_what_matters(backend):
    """Same objects (kind and name), same images, commands, args, probes, security contexts, affinity, volumes,
    RBAC rules (the Lease Role too), CRDs, config files, monitors and rules: the two install paths cannot drift
    apart silently. One difference, on purpose: with sqlite the chart's Role grants only the Lease, while
    deploy/overlays/sqlite keeps deploy/base's ledger grants (unused there)."""
    objs = render_chart(prometheusOperator__enabled=True, remediator__ledger__backend=backend,
                        prometheusOperator__rules__watchdog=True, prometheusOperator__rules__targetDown="allJobs")
    chart = {(o["kind"], o["metadata"]["name"]): normalized(o) for o in objs}
    kust = {(o["kind"], o["metadata"]["name"]): o for o in _kustomize_with_operator(LAYOUTS[backend])}
    kust = {(k, normalized(o)["name"]): normalized(o) for (k, _), o in kust.items() if k != "Namespace"}
    assert CRDS | {("Role", "vigil-remediator"), ("RoleBinding", "vigil-remediator")} <= set(chart)
    if backend == "sqlite":
        role = kust[("Role", "vigil-remediator")]
        assert LEDGER_RULE in role["rules"]
        role["rules"] = [r for r in role["rules"] if r != LEDGER_RULE]
    assert sorted(chart) == sorted(kust)
    for key in sorted(chart):
        assert chart[key] == kust[key], key


@pytest.mark.parametrize("backend", sorted(LAYOUTS))
def test_chart_has_the_lease_role_and_the_crds(backend):
    """Leader election is on whenever Vigil acts, so the remediator always gets the Lease (in its namespace
    only); the ledger's objects only with the Kubernetes ledger. The CRDs come from the chart's crds/."""
    objs = render_chart(remediator__ledger__backend=backend)
    assert {(o["kind"], o["metadata"]["name"]) for o in objs} >= CRDS
    roles = _by_kind(objs, "Role")
    assert [r["metadata"]["name"] for r in roles] == ["vigil-remediator"]
    assert roles[0]["metadata"]["namespace"] == "vigil"
    assert roles[0]["rules"] == ([LEASE_RULE, LEDGER_RULE] if backend == "kubernetes" else [LEASE_RULE])
    binding = _by_kind(objs, "RoleBinding")
    assert len(binding) == 1 and binding[0]["metadata"]["namespace"] == "vigil"
    assert binding[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": "vigil-remediator"}
    assert binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": "vigil-remediator", "namespace": "vigil"}]


def test_the_charts_crds_are_deploy_crds_byte_for_byte():
    """One source of truth: deploy/crds/vigil.io.yaml; the chart ships a copy (Helm reads crds/ untemplated)."""
    chart, source = REPO / "deploy/helm/vigil/crds/vigil.io.yaml", REPO / "deploy/crds/vigil.io.yaml"
    assert chart.read_bytes() == source.read_bytes(), f"stale copy: cp {source.relative_to(REPO)} {chart.parent}/"
    assert sorted(p.name for p in chart.parent.iterdir()) == ["vigil.io.yaml"]


def test_default_values_render_no_secret_and_no_operator_objects():
    objs = render_chart()
    kinds = {o["kind"] for o in objs}
    assert {"DaemonSet", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
            "ConfigMap", "Service", "PodDisruptionBudget", "CustomResourceDefinition"} <= kinds
    assert not kinds & {"Secret", "PodMonitor", "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig", "Namespace",
                        "PersistentVolumeClaim"}
    remediator = next(o for o in _by_kind(objs, "Deployment") if o["metadata"]["name"] == "vigil-remediator")
    assert remediator["spec"]["replicas"] == 3 and remediator["spec"]["strategy"]["type"] == "RollingUpdate"
    secrets = [v["secret"]["secretName"] for v in remediator["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secrets == ["vigil-intake-token", "vigil-read-token", "vigil-admin-token"]


def test_kube_prometheus_stack_values_label_every_operator_object_for_its_selectors():
    objs = render_chart(KPS_VALUES)
    operator = [o for o in objs if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(o["kind"] for o in operator) == ["AlertmanagerConfig", "PodMonitor", "PrometheusRule",
                                                   "ServiceMonitor", "ServiceMonitor"]
    for o in operator:
        assert o["metadata"]["labels"]["release"] == "kube-prometheus-stack", o["metadata"]["name"]
    assert not _by_kind(objs, "Secret")  # generated at install only (lookup): see test_helm_auth.py
    amc = _by_kind(objs, "AlertmanagerConfig")[0]
    hook = next(r for r in amc["spec"]["receivers"] if r["name"] == "vigil-remediator")["webhookConfigs"][0]
    assert hook["httpConfig"]["authorization"]["credentials"] == {"name": "vigil-intake-token", "key": "token"}
    rule = _by_kind(objs, "PrometheusRule")[0]
    committed = yaml.safe_load((REPO / "deploy/prometheus-operator/prometheusrule.yaml").read_text())
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in committed["spec"]["groups"]]
    ds = _by_kind(objs, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ds[ds.index("--alertmanager-url") + 1] == "http://kube-prometheus-stack-alertmanager.monitoring.svc:9093"


def _matchers(ms: list[dict]) -> list[str]:
    return sorted(f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"' for m in ms)


def test_alertmanager_config_routes_like_the_shipped_alertmanager_yml():
    shipped = yaml.safe_load((REPO / "alerts/alertmanager.yml").read_text())
    route = next(r for r in shipped["route"]["routes"] if r["receiver"] == "vigil-remediator")
    receiver = next(r for r in shipped["receivers"] if r["name"] == "vigil-remediator")["webhook_configs"][0]
    amc = _by_kind(render_chart(alertmanagerConfig__enabled=True), "AlertmanagerConfig")[0]["spec"]
    assert amc["route"]["continue"] is True and amc["route"]["receiver"] == "vigil-none"
    (ours,) = amc["route"]["routes"]  # no notifications receiver configured
    assert _matchers(ours["matchers"]) == sorted(route["matchers"])
    assert (ours["groupBy"], ours["groupWait"], ours["groupInterval"], ours["repeatInterval"], ours["continue"]) == (
        route["group_by"], route["group_wait"], route["group_interval"], route["repeat_interval"], route["continue"])
    assert [r["name"] for r in amc["receivers"]] == ["vigil-none", "vigil-remediator"]
    assert amc["receivers"][0] == {"name": "vigil-none"}  # no integration: nothing is sent
    hook = amc["receivers"][1]["webhookConfigs"][0]
    assert hook["url"] == "http://vigil-remediator.vigil.svc:9095/webhook/alertmanager"
    assert receiver["url"].endswith("/webhook/alertmanager")
    assert (hook["sendResolved"], hook["maxAlerts"]) == (receiver["send_resolved"], receiver["max_alerts"])
    assert hook["httpConfig"]["authorization"]["type"] == receiver["http_config"]["authorization"]["type"]
    inhibit = [(_matchers(r["sourceMatch"]), _matchers(r["targetMatch"]), r["equal"]) for r in amc["inhibitRules"]]
    assert inhibit == [(sorted(r["source_matchers"]), sorted(r["target_matchers"]), r["equal"])
                       for r in shipped["inhibit_rules"]]


def test_alertmanager_config_in_alertmanagers_namespace_gets_its_own_copy_of_the_intake_secret():
    out = helm("template", "vigil", "deploy/helm/vigil", "-n", "vigil", "--set", "alertmanagerConfig.enabled=true",
               "--set", "alertmanagerConfig.namespace=monitoring").stdout
    amc = _by_kind([o for o in yaml.safe_load_all(out) if o], "AlertmanagerConfig")[0]
    assert amc["metadata"]["namespace"] == "monitoring"
    for ns in ("vigil", "monitoring"):  # generated at install, the same value in both (test_helm_auth.py)
        assert f"# Secret {ns}/vigil-intake-token (intake) is generated at install" in out
    assert "# Secret monitoring/vigil-admin-token" not in out


def test_vigil_remediation_notifications_route_to_the_configured_receiver():
    objs = render_chart(KPS_VALUES)
    amc = _by_kind(objs, "AlertmanagerConfig")[0]["spec"]
    notify = amc["route"]["routes"][1]
    assert notify["receiver"] == "vigil-notifications"
    assert notify["matchers"] == [{"name": "alertname", "value": "VigilRemediation", "matchType": "="}]
    assert "vigil-notifications" in [r["name"] for r in amc["receivers"]]
    cfg = yaml.safe_load(_remediator(objs, "ConfigMap")["data"]["vigil.yaml"])
    assert cfg["notifications"]["alertmanager_urls"] == ["http://kube-prometheus-stack-alertmanager.monitoring.svc:9093"]


def _remediator(objs: list[dict], kind: str) -> dict:
    return next(o for o in _by_kind(objs, kind) if o["metadata"]["name"].startswith("vigil-remediator"))


def test_kubernetes_ledger_by_default_runs_three_replicas_on_different_nodes_with_no_volume():
    objs = render_chart()
    dep = _remediator(objs, "Deployment")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(anti) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    term = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert _remediator(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert not _by_kind(objs, "PersistentVolumeClaim")
    assert "ledger" not in {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    cm = _remediator(objs, "ConfigMap")
    assert yaml.safe_load(cm["data"]["vigil.yaml"])["ledger"] == {"backend": "kubernetes", "namespace": "vigil"}
    other = render_chart(namespace="ops")
    cm = _remediator(other, "ConfigMap")
    assert yaml.safe_load(cm["data"]["vigil.yaml"])["ledger"] == {"backend": "kubernetes", "namespace": "ops"}
    assert _remediator(render_chart(remediator__replicas=5), "PodDisruptionBudget")["spec"]["minAvailable"] == 4


def test_sqlite_ledger_runs_one_replica_with_its_volume_and_recreate():
    objs = render_chart(remediator__ledger__backend="sqlite")
    dep = _remediator(objs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert "podAntiAffinity" not in dep["spec"]["template"]["spec"]["affinity"]
    assert _remediator(objs, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1, "selector": dep["spec"]["selector"]}
    assert [p["metadata"]["name"] for p in _by_kind(objs, "PersistentVolumeClaim")] == ["vigil-ledger"]
    cm = _remediator(objs, "ConfigMap")
    assert yaml.safe_load(cm["data"]["vigil.yaml"])["ledger"] == {"path": "/var/lib/vigil/ledger.db"}


@pytest.mark.parametrize(("sets", "message"), [
    ({"remediator__ledger__backend": "sqlite", "remediator__replicas": 2},
     "needs remediator.ledger.backend=kubernetes"),
    ({"remediator__ledger__backend": "etcd"}, "value must be one of 'sqlite', 'kubernetes'"),  # values.schema.json
    ({"remediator__config__ledger__path": "/x.db"}, "remediator.config.ledger is set by the chart"),
    ({"gpuExporter__alertmanagerUrls[0]": "am:9093"}, "/gpuExporter/alertmanagerUrls/0"),
    ({"remediator__enabled": False, "alertmanagerConfig__enabled": True}, "enable remediator too"),
])
def test_values_that_cannot_work_fail_the_render_with_a_message(sets, message):
    args = [str(bins.helm()), "template", "vigil", "deploy/helm/vigil"]
    for k, v in sets.items():
        args += ["--set", f"{k.replace('__', '.')}={str(v).lower() if isinstance(v, bool) else v}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode != 0 and message in r.stderr, r.stdout[-500:] + r.stderr


@pytest.mark.parametrize("backend", sorted(LAYOUTS))
@pytest.mark.parametrize("values", [[], [KPS_VALUES]], ids=["default", "kube-prometheus-stack"])
def test_the_remediator_config_the_chart_renders_passes_check_config(tmp_path, values, backend):
    cm = next(o for o in render_chart(*values, remediator__ledger__backend=backend)
              if o["kind"] == "ConfigMap" and "remediator" in o["metadata"]["name"])
    for role in ("intake", "read", "admin"):
        (tmp_path / role).mkdir()
        (tmp_path / role / "token").write_text("t")
    config = tmp_path / "vigil.yaml"
    config.write_text(cm["data"]["vigil.yaml"].replace("/etc/vigil-secrets/", f"{tmp_path}/"))
    r = subprocess.run([sys.executable, "-c", "import sys; from remediator.cli import main; sys.exit(main())",
                        "check-config", "--check-secrets", str(config)], capture_output=True, text=True, timeout=60,
                       cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 rules, dry_run=True, auth=configured" in r.stdout


def _dry_run(cp, objs: list[dict]) -> str:
    r = subprocess.run([str(bins.binary("kubectl")), "--kubeconfig", str(cp.kubeconfig), "apply", "--server-side",
                        "--dry-run=server", "-f", "-"], input=yaml.safe_dump_all(objs), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


VARIANTS = {  # what a platform team turns on; each must pass the API server's own validation
    "default": ([], {}),
    "kube-prometheus-stack": ([KPS_VALUES], {"alertmanagerConfig__namespace": "monitoring"}),
    "gpu-namespace-split": ([], {"gpuExporter__namespace__name": "vigil-gpu", "gpuExporter__namespace__create": True,
                                 "gpuExporter__kernelLog__enabled": True, "prometheusOperator__enabled": True}),
    "repair": ([], {"repair__enabled": True, "repair__medik8s": True, "repair__clusterApi": True,
                    "repair__karpenter": True, "remediator__config__repair__namespace": "vigil-repair"}),
    "runtime-class-override": ([], {"gpuExporter__runtimeClassName": "nvidia-cdi"}),
}


@pytest.mark.k8s
@pytest.mark.parametrize("backend", sorted(LAYOUTS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_server_side_dry_run_of_the_rendered_chart(k8s_api, variant, backend):
    """Everything `helm install` creates, the CRDs first (as Helm installs crds/ before the templates)."""
    kubectl = [str(bins.binary("kubectl")), "--kubeconfig", str(k8s_api.kubeconfig)]
    install_operator_crds(k8s_api)
    for ns in ("vigil", "monitoring", "vigil-gpu", "vigil-repair"):
        subprocess.run([*kubectl, "create", "namespace", ns], capture_output=True, timeout=60)
    files, sets = VARIANTS[variant]
    objs = render_chart(*files, remediator__ledger__backend=backend, **sets)
    assert [o["kind"] for o in objs[:2]] == ["CustomResourceDefinition"] * 2
    out = _dry_run(k8s_api, objs)
    for o in objs:
        assert f"{o['metadata']['name']} serverside-applied (server dry run)" in out, (o["kind"], out)


@pytest.mark.parametrize("component", ["gpuExporter", "serviceExporter", "remediator"])
def test_each_component_can_be_left_out(component):
    names = {o["metadata"]["name"] for o in render_chart(prometheusOperator__enabled=True,
                                                         **{f"{component}__enabled": False})}
    stem = {"gpuExporter": "vigil-gpu-exporter", "serviceExporter": "vigil-service-exporter",
            "remediator": "vigil-remediator"}[component]
    assert not {n for n in names if n.startswith(stem)}, names
    assert {"vigil-gpu-exporter", "vigil-service-exporter", "vigil-remediator"} - {stem} <= names


def test_namespace_created_with_its_pod_security_level_on_request():
    ns = [o for o in render_chart(namespace__create=True, namespace__podSecurity="privileged")
          if o["kind"] == "Namespace"]
    assert len(ns) == 1 and ns[0]["metadata"]["name"] == "vigil"
    assert ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.k8s
def test_the_documented_crd_upgrade_step_updates_crds_helm_installed_once(k8s_api):
    """Helm installs crds/ once and never upgrades them; NOTES and the README give the step that does,
    `kubectl apply --server-side --force-conflicts -f <chart>/crds/`. Here an older CRD (one printer column
    fewer) owned by Helm's field manager is brought to the chart's by exactly that command."""
    kubectl = [str(bins.binary("kubectl")), "--kubeconfig", str(k8s_api.kubeconfig)]
    crds = [o for o in yaml.safe_load_all((REPO / "deploy/helm/vigil/crds/vigil.io.yaml").read_text()) if o]
    old = yaml.safe_load(yaml.safe_dump(crds[0]))
    old["spec"]["versions"][0]["additionalPrinterColumns"].pop(3)  # the Rule column came later
    r = subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "--field-manager=helm", "-f", "-"],
                       input=yaml.safe_dump(old), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    notes = (REPO / "deploy/helm/vigil/templates/NOTES.txt").read_text()
    step = "kubectl apply --server-side --force-conflicts -f <chart>/crds/"
    assert step in notes and step in (REPO / "README.md").read_text()
    cmd = step.replace("<chart>", "deploy/helm/vigil").split()[1:]
    r = subprocess.run([*kubectl, *cmd], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    got = subprocess.run([*kubectl, "get", "crd", crds[0]["metadata"]["name"], "-o", "yaml"], capture_output=True,
                         text=True, timeout=60)
    columns = yaml.safe_load(got.stdout)["spec"]["versions"][0]["additionalPrinterColumns"]
    want = crds[0]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [c["name"] for c in want]


@pytest.mark.k8s
@pytest.mark.parametrize("armed", [False, True])
def test_notes_say_what_is_still_needed_and_how_to_arm(k8s_api, armed):
    r = subprocess.run([str(bins.helm()), "install", "vigil", "deploy/helm/vigil", "-n", "vigil", "--dry-run=client",
                        "--kubeconfig", str(k8s_api.kubeconfig),
                        "--set", f"remediator.config.safety.dry_run={str(not armed).lower()}"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    notes = r.stdout[r.stdout.index("NOTES:"):]
    if armed:
        assert "REMEDIATION: ARMED." in notes and 'remediator pause --reason' in notes
    else:
        assert "REMEDIATION: DRY-RUN." in notes and "--set remediator.config.safety.dry_run=false" in notes
    for needed in ("needs RuntimeClass nvidia", "kubectl get runtimeclass nvidia",
                   "kubectl label namespace vigil pod-security.kubernetes.io/enforce=restricted",
                   "kubectl apply --server-side --force-conflicts -f <chart>/crds/",
                   "intake  Secret vigil-intake-token key token (generated at install, kept)",
                   "admin   Secret vigil-admin-token key token"):
        assert needed in notes, (needed, notes)
