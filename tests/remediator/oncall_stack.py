"""A real `remediator serve` process for the on-call tests: three credentials with different roles,
its own node pool on the session cluster, notifications to a real Alertmanager running the shipped
routing (whose vigil-notifications receiver is pointed at a webhook receiver), and status-page links."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.k8s.controlplane import add_gpu_nodes, free_port
from tests.stack import REPO, Proc, Stack, WebhookReceiver, tool

TOKENS = {"alertmanager": "intake-token-0123456789", "oncall": "admin-token-0123456789",
          "viewer": "read-token-0123456789"}
VIEWER_PASSWORD = "viewer-password-0123"
POLICY = {"rules": [{"name": "gpu-xid-node-fatal", "match": ['alertname="GpuXidCritical"', 'node!=""'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}


@dataclass
class Live:
    url: str
    workdir: Path
    nodes: list[str]
    receiver: WebhookReceiver
    alertmanager_url: str
    proc: Proc
    stack: Stack
    config: Path
    api: Any = None  # a Kubernetes ApiClient for the session cluster

    def token_file(self, who: str) -> Path:
        return self.workdir / f"{who}.token"

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}"}

    def cli(self, *args: str, who: str | None = "oncall", env: dict | None = None) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        base["VIGIL_URL"] = self.url
        if who:
            base["VIGIL_TOKEN_FILE"] = str(self.token_file(who))
        return subprocess.run([sys.executable, "-m", "remediator.cli", *args], capture_output=True, text=True,
                              env={**base, **(env or {})}, timeout=60)

    def spawn_serve(self, name: str) -> tuple[Proc, str]:
        port = free_port()
        proc = self.stack.spawn(name, [sys.executable, "-m", "remediator.cli", "serve", "--config", str(self.config),
                                       "--listen", f"127.0.0.1:{port}", "--log-format", "text"], cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        self.stack.wait_http(proc, f"{url}/healthz")
        return proc, url


def _alertmanager(stack: Stack, receiver: WebhookReceiver) -> str:
    cfg = yaml.safe_load((REPO / "alerts/alertmanager.yml").read_text())
    secret = stack.workdir / "am-webhook-token"
    secret.write_text(TOKENS["alertmanager"])
    for r in cfg["receivers"]:
        for w in r.get("webhook_configs", []):
            w["http_config"]["authorization"]["credentials_file"] = str(secret)
            w["url"] = "http://127.0.0.1:9/unused"  # the tests post webhooks themselves
        if r["name"] == "vigil-notifications":  # the shipped receiver, pointed at our webhook receiver
            r["webhook_configs"] = [{"url": receiver.url, "send_resolved": False}]
    path = stack.workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = stack.spawn("alertmanager", [tool("prometheus-alertmanager"), f"--config.file={path}",
                                        f"--storage.path={stack.workdir / 'am-data'}",
                                        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                        "--log.level=warn"])
    url = f"http://127.0.0.1:{port}"
    stack.wait_http(proc, f"{url}/-/ready")
    return url


def start(workdir: Path, k8s_cluster, pool: str) -> Live:
    stack = Stack(workdir)
    receiver = WebhookReceiver()
    try:
        am = _alertmanager(stack, receiver)
        nodes = [f"{pool}-n{i}" for i in range(3)]
        add_gpu_nodes(k8s_cluster.api_client(), nodes, pool=pool)
        for who, token in TOKENS.items():
            (workdir / f"{who}.token").write_text(token + "\n")
        (workdir / "viewer.password").write_text(VIEWER_PASSWORD)
        creds = [{"name": "alertmanager", "roles": ["intake"],
                  "bearer_token_file": str(workdir / "alertmanager.token")},
                 {"name": "oncall", "roles": ["admin"], "bearer_token_file": str(workdir / "oncall.token")},
                 {"name": "viewer", "roles": ["read"], "bearer_token_file": str(workdir / "viewer.token"),
                  "basic_auth": {"username": "viewer", "password_file": str(workdir / "viewer.password")}}]
        config = {"auth": {"credentials": creds}, "ledger": {"path": str(workdir / "ledger.db")},
                  "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
                  "safety": {"budget": {"max_nodes": 2, "min_nodes": 1,
                                        "pools": {"label": "vigil.io/pool", "default": {"max_nodes": 3}}},
                             "breaker": {"max_actions": 50}},
                  "notifications": {"alertmanager_urls": [am], "timeout": "5s", "ends_after": "5m",
                                    "labels": {"cluster": "test"}},
                  "ui": {"grafana_url": "http://127.0.0.1:3000/d/vigil-remediation", "alertmanager_url": am},
                  "policy": POLICY}
        path = workdir / "vigil.yaml"
        path.write_text(yaml.safe_dump(config))
        live = Live("", workdir, nodes, receiver, am, None, stack, path, k8s_cluster.api_client())  # type: ignore[arg-type]
        live.proc, live.url = live.spawn_serve("remediator")
        return live
    except BaseException:
        stack.stop()
        receiver.close()
        raise


def stop(live: Live) -> None:
    live.stack.stop()
    live.receiver.close()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is missing: `make test` installs the Debian package chromium")
    return path


# No traffic leaves 127.0.0.1: no background services, no name resolution except for localhost.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-pings",
                  "--disable-domain-reliability", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                  "--hide-scrollbars"]


def browse(url: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}", *args, url],
                          capture_output=True, text=True, timeout=120)


def get(live: Live, path: str, who: str = "viewer") -> dict:
    r = requests.get(f"{live.url}{path}", headers=live.headers(who), timeout=10)
    r.raise_for_status()
    return r.json()
