"""Several `remediator serve` processes against the local cluster, for the HA tests and the bench:
real processes (so SIGKILL is a real crash), each on its own port on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from tests.k8s.controlplane import free_port, wait_until

TOKEN = "replica-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Replica:
    name: str
    url: str
    popen: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def post(self, payload: dict, timeout: float = 10) -> requests.Response:
        return requests.post(f"{self.url}/webhook/alertmanager", json=payload, headers=HEADERS, timeout=timeout)

    def state(self) -> dict | None:
        try:
            r = requests.get(f"{self.url}/api/state", headers=HEADERS, timeout=2)
            return r.json() if r.ok else None
        except requests.RequestException:
            return None

    def incidents(self) -> list[dict]:
        items, offset = [], 0
        while offset is not None:
            page = requests.get(f"{self.url}/api/incidents", params={"limit": 500, "offset": offset},
                                headers=HEADERS, timeout=10).json()
            items += page["items"]
            offset = page["next_offset"]
        return items

    def incident(self, incident_id: int) -> dict:
        return requests.get(f"{self.url}/api/incidents/{incident_id}", headers=HEADERS, timeout=10).json()

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.alive:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@dataclass
class Replicas:
    workdir: Path
    base_config: dict
    replicas: list[Replica] = field(default_factory=list)

    def start(self, name: str, overrides: dict | None = None, wait: bool = True) -> Replica:
        cfg = {**self.base_config, **(overrides or {})}
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        port = free_port()
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(path),
                                      "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "VIGIL_TEST_TOKEN": TOKEN})
        r = Replica(name, f"http://127.0.0.1:{port}", popen, log)
        self.replicas.append(r)
        if wait:
            self.wait_ready(r)
        return r

    def wait_ready(self, r: Replica, timeout: float = 60) -> None:
        def ready() -> bool:
            if not r.alive:
                raise RuntimeError(f"{r.name} exited: {r.log.read_text()[-3000:]}")
            try:
                return requests.get(f"{r.url}/readyz", timeout=2).ok
            except requests.RequestException:
                return False
        wait_until(ready, timeout, what=f"{r.name} ready")

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def leader(self) -> Replica | None:
        leaders = [r for r in self.alive() if (r.state() or {}).get("leader")]
        assert len(leaders) <= 1, f"two leaders at once: {[r.name for r in leaders]}"
        return leaders[0] if leaders else None

    def wait_leader(self, timeout: float = 60) -> Replica:
        return wait_until(self.leader, timeout, interval=0.1, what="a leader")

    def stop_all(self) -> None:
        for r in self.replicas:
            r.stop()


def node_events(core, namespace: str, reason: str, nodes: list[str]) -> dict[str, int]:
    """Events Vigil recorded on these nodes, by node: a doubled action shows as a count of 2. (Events
    on a cluster-scoped Node must live in `default`: the apiserver rejects them elsewhere with 422.)"""
    counts: dict[str, int] = {}
    wanted = set(nodes)
    for e in core.list_namespaced_event(namespace).items:
        if e.reason == reason and e.involved_object.kind == "Node" and e.involved_object.name in wanted:
            counts[e.involved_object.name] = counts.get(e.involved_object.name, 0) + 1
    return counts


def now_ms() -> float:
    return time.monotonic() * 1000
