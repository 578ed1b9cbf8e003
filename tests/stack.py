"""Real Prometheus, Alertmanager, a webhook receiver and simulated GPU exporters on 127.0.0.1, for
the integration tests, the benchmarks and the demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from alerts import generate
from tests.k8s.controlplane import free_port

REPO = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} is missing: `make test` installs prometheus and prometheus-alertmanager")
    return path


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: dict


class WebhookReceiver:
    """Records every POST body (an Alertmanager v4 payload) with its arrival time."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._cond:
                    outer.received.append(Received(time.monotonic(), dict(self.headers), json.loads(body)))
                    outer._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook/alertmanager"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, pred: Callable[[dict], bool], timeout: float) -> Received:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.received:
                    if pred(r.body):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [a["labels"].get("alertname") for r in self.received for a in r.body["alerts"]]
                    raise TimeoutError(f"no matching webhook in {timeout:.0f} s; got {len(self.received)}: {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@dataclass
class Stack:
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    prometheus_url: str = ""
    alertmanager_url: str = ""

    def spawn(self, name: str, args: list[str], *, cwd: Path | None = None, env: dict | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            p = Proc(name, subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or self.workdir,
                                            env={**os.environ, **env} if env else None), log)
        self.procs.append(p)
        return p

    def wait_http(self, proc: Proc, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-2000:]}")
            try:
                if requests.get(url, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} not ready at {url}: {proc.log.read_text()[-2000:]}")

    def start_alertmanager(self, webhook_url: str, token: str, config: Path = REPO / "alerts/alertmanager.yml",
                           port: int | None = None) -> str:
        """The shipped routing, with the remediator receiver pointed at `webhook_url`."""
        cfg = yaml.safe_load(config.read_text())
        secret = self.workdir / "webhook-token"
        secret.write_text(token)
        for r in cfg["receivers"]:
            for w in r.get("webhook_configs", []):
                w["url"] = webhook_url
                w["http_config"]["authorization"]["credentials_file"] = str(secret)
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(cfg))
        port = port or free_port()
        proc = self.spawn("alertmanager", [tool("prometheus-alertmanager"), f"--config.file={path}",
                                           f"--storage.path={self.workdir / 'am-data'}",
                                           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                           "--log.level=warn"])
        self.alertmanager_url = f"http://127.0.0.1:{port}"
        self.wait_http(proc, f"{self.alertmanager_url}/-/ready")
        return self.alertmanager_url

    def start_prometheus(self, scrape_configs: list[dict], *, scrape_interval: str = "1s",
                         settings: generate.Settings | None = None, extra_rule_files: dict | None = None,
                         port: int | None = None) -> str:
        settings = settings or generate.Settings()
        rules = self.workdir / "rules"
        rules.mkdir(exist_ok=True)
        for name, data in {**generate.rule_files(settings), **(extra_rule_files or {})}.items():
            (rules / name).write_text(yaml.safe_dump(data))
        cfg = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                          "scrape_timeout": scrape_interval},
               "rule_files": [str(rules / "*.yml")],
               "alerting": {"alertmanagers": [{"static_configs": [
                   {"targets": [self.alertmanager_url.removeprefix("http://")]}]}]} if self.alertmanager_url else {},
               "scrape_configs": scrape_configs}
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        port = port or free_port()
        proc = self.spawn("prometheus", [tool("prometheus"), f"--config.file={path}",
                                         f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                                         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
        self.prometheus_url = f"http://127.0.0.1:{port}"
        self.wait_http(proc, f"{self.prometheus_url}/-/ready")
        return self.prometheus_url

    def query(self, expr: str) -> list[dict]:
        r = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def query_range(self, expr: str, seconds: float = 300, step: float = 5) -> list[dict]:
        now = time.time()
        r = requests.get(f"{self.prometheus_url}/api/v1/query_range",
                         params={"query": expr, "start": now - seconds, "end": now, "step": step}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def wait_targets_up(self, job: str, n: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len([s for s in self.query(f'up{{job="{job}"}} == 1')]) >= n:
                return
            time.sleep(0.25)
        raise TimeoutError(f"{job}: fewer than {n} targets up")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
