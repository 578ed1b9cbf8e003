"""The chart's credentials: one Secret per caller (intake for Alertmanager, read for viewers, admin for
on-call), renders that never change between runs, and a real `remediator serve` running the vigil.yaml the
chart renders, with its Secrets laid out as the kubelet does (a `..data` symlink swapped on change), so a
rotation is seen without a restart."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.deploy.helm import CHART, KPS_VALUES, helm, render_chart
from tests.k8s import bins
from tests.k8s.controlplane import free_port, wait_until
from tests.stack import REPO, Stack

ROLES = ("intake", "read", "admin")
TOKENS = {"intake": "intake-token-0123456789", "read": "read-token-0123456789", "admin": "admin-token-0123456789"}


def _by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def _remediator_config(objs: list[dict]) -> dict:
    cm = next(o for o in _by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "vigil-remediator-config")
    return yaml.safe_load(cm["data"]["vigil.yaml"])


def test_each_caller_has_its_own_secret_and_role():
    objs = render_chart()
    creds = _remediator_config(objs)["auth"]["credentials"]
    assert [(c["name"], c["roles"]) for c in creds] == [("alertmanager", ["intake"]), ("viewer", ["read"]),
                                                         ("oncall", ["admin"])]
    assert [c["bearer_token_file"] for c in creds] == [f"/etc/vigil-secrets/{r}/token" for r in ROLES]
    assert "basic_auth" not in creds[0]  # Alertmanager sends a bearer token; browsers get read or admin
    assert creds[1]["basic_auth"] == {"username": "viewer", "password_file": "/etc/vigil-secrets/read/token"}
    assert creds[2]["basic_auth"] == {"username": "admin", "password_file": "/etc/vigil-secrets/admin/token"}
    pod = next(o for o in _by_kind(objs, "Deployment") if o["metadata"]["name"] == "vigil-remediator")
    spec = pod["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert volumes == {f"{r}-token": f"vigil-{r}-token" for r in ROLES}
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    for r in ROLES:  # a whole directory, never subPath: the kubelet updates it when the Secret changes
        assert mounts[f"{r}-token"]["mountPath"] == f"/etc/vigil-secrets/{r}" and "subPath" not in mounts[f"{r}-token"]


def test_existing_secrets_are_referenced_and_the_alertmanager_config_uses_intake():
    objs = render_chart(alertmanagerConfig__enabled=True, remediator__auth__intake__existingSecret="am-hook",
                        remediator__auth__intake__key="bearer", remediator__auth__read__existingSecret="viewers",
                        remediator__auth__admin__existingSecret="oncall")
    assert not _by_kind(objs, "Secret")
    amc = _by_kind(objs, "AlertmanagerConfig")[0]
    hook = next(r for r in amc["spec"]["receivers"] if r["name"] == "vigil-remediator")["webhookConfigs"][0]
    assert hook["httpConfig"]["authorization"]["credentials"] == {"name": "am-hook", "key": "bearer"}
    pod = next(o for o in _by_kind(objs, "Deployment") if o["metadata"]["name"] == "vigil-remediator")
    spec = pod["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert volumes == {"intake-token": "am-hook", "read-token": "viewers", "admin-token": "oncall"}
    assert _remediator_config(objs)["auth"]["credentials"][0]["bearer_token_file"] == "/etc/vigil-secrets/intake/bearer"


def test_read_can_be_turned_off():
    objs = render_chart(remediator__auth__read__enabled=False)
    assert [c["name"] for c in _remediator_config(objs)["auth"]["credentials"]] == ["alertmanager", "oncall"]


def _template(*args: str) -> str:
    return helm("template", "vigil", str(CHART), "--namespace", "vigil", *args).stdout


@pytest.mark.parametrize("args", [[], ["-f", str(KPS_VALUES)],
                                  ["--set", "remediator.auth.intake.existingSecret=am-hook"]],
                         ids=["default", "kube-prometheus-stack", "existing-secret"])
def test_two_renders_are_identical_and_hold_no_generated_secret(args):
    """Without a cluster to keep a generated token in, the chart renders no Secret (and says so in a
    comment), so `helm template` never changes between runs (ArgoCD, helm-diff)."""
    first, second = _template(*args), _template(*args)
    assert first == second
    assert not [o for o in yaml.safe_load_all(first) if o and o["kind"] == "Secret"]
    if "existing-secret" not in str(args):
        assert "is generated at install, not by\n# `helm template`" in first


@pytest.mark.k8s
def test_with_a_cluster_a_stored_secret_is_kept_and_renders_stay_identical(k8s_api):
    """`lookup` sees the cluster under `helm template --dry-run=server` as under `helm upgrade`: the Secrets
    already stored are rendered as they are (never a new random value); a missing one is generated, kept
    with `helm.sh/resource-policy: keep`."""
    kubectl = [str(bins.binary("kubectl")), "--kubeconfig", str(k8s_api.kubeconfig)]
    ns = "vigil-auth-render"
    subprocess.run([*kubectl, "create", "namespace", ns], capture_output=True, timeout=60)
    for role in ROLES:
        subprocess.run([*kubectl, "-n", ns, "create", "secret", "generic", f"vigil-{role}-token",
                        f"--from-literal=token={TOKENS[role]}"], capture_output=True, timeout=60)
    env = {**os.environ, "KUBECONFIG": str(k8s_api.kubeconfig)}

    def render() -> str:
        r = subprocess.run([str(bins.helm()), "template", "vigil", str(CHART), "--namespace", ns, "--dry-run=server"],
                           capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
        assert r.returncode == 0, r.stderr
        return r.stdout

    first, second = render(), render()
    assert first == second
    secrets = {o["metadata"]["name"]: o for o in yaml.safe_load_all(first) if o and o["kind"] == "Secret"}
    assert set(secrets) == {f"vigil-{r}-token" for r in ROLES}
    for role in ROLES:
        s = secrets[f"vigil-{role}-token"]
        assert base64.b64decode(s["data"]["token"]).decode() == TOKENS[role]
        assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# ---- the rendered vigil.yaml, served ------------------------------------------------------------------


def _secret_dir(root: Path, role: str, value: str, generation: int) -> None:
    """Write a Secret volume as the kubelet does: files in a timestamped directory, `..data` pointing at
    it (swapped by a rename on each update), and `token -> ..data/token`."""
    d = root / role
    d.mkdir(parents=True, exist_ok=True)
    data = d / f"..{generation}"
    data.mkdir()
    (data / "token").write_text(value)
    tmp = d / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, d / "..data")
    if not (d / "token").is_symlink():
        (d / "token").symlink_to("..data/token")


@pytest.fixture
def served(tmp_path):
    objs = render_chart(remediator__ledger__backend="sqlite")
    cfg = _remediator_config(objs)
    assert cfg["safety"]["dry_run"] is True  # a first install acts on nothing
    secrets = tmp_path / "secrets"
    for role in ROLES:
        _secret_dir(secrets, role, TOKENS[role], 1)
    text = yaml.safe_dump(cfg).replace("/etc/vigil-secrets/", f"{secrets}/").replace(
        "/var/lib/vigil/ledger.db", str(tmp_path / "ledger.db"))
    config = tmp_path / "vigil.yaml"
    config.write_text(text)
    stack = Stack(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    proc = stack.spawn("remediator", [sys.executable, "-m", "remediator.cli", "serve", "--config", str(config),
                                      "--listen", f"127.0.0.1:{port}", "--log-format", "text"], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        stack.wait_http(proc, f"{url}/healthz")
        yield url, secrets, proc
    finally:
        proc.stop()


def _bearer(role: str, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or TOKENS[role]}"}


def test_the_rendered_credentials_separate_alertmanager_viewers_and_on_call(served):
    url, _, proc = served
    pause = {"paused": True, "reason": "chart render test"}
    # Alertmanager's credential reaches the webhook (400: an empty body, past authentication) and nothing else.
    assert requests.post(f"{url}/webhook/alertmanager", data=b"{}", headers=_bearer("intake"), timeout=10
                         ).status_code == 400
    r = requests.post(f"{url}/api/pause", json=pause, headers=_bearer("intake"), timeout=10)
    assert r.status_code == 403 and "lacks the 'admin' role" in r.json()["detail"]
    assert requests.get(f"{url}/api/status", headers=_bearer("intake"), timeout=10).status_code == 403
    # A viewer's browser (Basic) and CLI (bearer) read, and cannot pause.
    page = requests.get(f"{url}/", auth=("viewer", TOKENS["read"]), timeout=10)
    assert page.status_code == 200 and "DRY-RUN" in page.text
    assert requests.get(f"{url}/api/incidents", headers=_bearer("read"), timeout=10).status_code == 200
    r = requests.post(f"{url}/api/pause", json=pause, auth=("viewer", TOKENS["read"]), timeout=10)
    assert r.status_code == 403
    # On-call pauses and resumes.
    r = requests.post(f"{url}/api/pause", json=pause, headers=_bearer("admin"), timeout=10)
    assert r.status_code == 200 and r.json()["by"].startswith("oncall@")
    assert requests.post(f"{url}/api/pause", json={"paused": False}, auth=("admin", TOKENS["admin"]),
                         timeout=10).status_code == 200
    assert "DRY-RUN: Vigil decides and records, and changes nothing" in proc.log.read_text()


def test_a_rotated_secret_is_used_without_a_restart(served):
    url, secrets, proc = served
    pid = proc.popen.pid
    _secret_dir(secrets, "admin", "rotated-admin-token-42", 2)
    _secret_dir(secrets, "intake", "", 2)  # a half-written update: the last good value stays
    new = _bearer("admin", "rotated-admin-token-42")
    wait_until(lambda: requests.get(f"{url}/api/status", headers=new, timeout=10).status_code == 200, 10,
               what="the rotated admin token to be accepted")
    assert requests.get(f"{url}/api/status", headers=_bearer("admin"), timeout=10).status_code == 401
    assert requests.post(f"{url}/webhook/alertmanager", data=b"{}", headers=_bearer("intake"), timeout=10
                         ).status_code == 400
    assert proc.popen.poll() is None and proc.popen.pid == pid
    time.sleep(0.2)
    log = proc.log.read_text()
    assert f"secret {secrets}/admin/token changed: using the new value" in log
    assert f"secret {secrets}/intake/token changed and is empty: keeping the previous value" in log


@pytest.mark.k8s
def test_a_real_install_generates_each_secret_once_and_an_upgrade_keeps_them(k8s_api):
    """`helm install` on the local apiserver: one random Secret per caller, kept by `helm upgrade` (read back
    with `lookup`) and by `helm uninstall` (`helm.sh/resource-policy: keep`), so tokens never change under
    Alertmanager or on-call."""
    ns, release = "vigil-helm-install", "vigil-it"
    env = {**os.environ, "KUBECONFIG": str(k8s_api.kubeconfig)}
    kubectl = [str(bins.binary("kubectl")), "-n", ns]

    def run(*args: str) -> str:
        r = subprocess.run(args, capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
        assert r.returncode == 0, f"{args}: {r.stderr}"
        return r.stdout

    def tokens() -> dict[str, str]:
        out = {}
        for role in ROLES:
            data = yaml.safe_load(run(*kubectl, "get", "secret", f"{release}-{role}-token", "-o", "yaml"))["data"]
            out[role] = base64.b64decode(data["token"]).decode()
        return out

    helm_ = str(bins.helm())
    out = run(helm_, "install", release, str(CHART), "-n", ns, "--create-namespace")
    assert "REMEDIATION: DRY-RUN." in out
    first = tokens()
    assert all(len(t) == 40 and t.isalnum() for t in first.values()) and len(set(first.values())) == 3
    run(helm_, "upgrade", release, str(CHART), "-n", ns, "--set", "remediator.config.safety.dry_run=false")
    assert tokens() == first
    rendered = [run(helm_, "template", release, str(CHART), "-n", ns, "--dry-run=server") for _ in range(2)]
    assert rendered[0] == rendered[1] and first["admin"] not in rendered[0]  # base64 in the Secret, never plain
    run(helm_, "uninstall", release, "-n", ns)
    assert tokens() == first  # kept: a reinstall reuses them
    run(*kubectl, "delete", "secret", *(f"{release}-{r}-token" for r in ROLES))
