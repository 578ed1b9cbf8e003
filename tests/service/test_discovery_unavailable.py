"""Discovery that cannot start, or fails later, never costs the static targets: the exporter keeps
probing them, says service_exporter_discovery_up 0 with the reason in its log and retries with
backoff; only with nothing at all to probe does it stop, with one line and exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.k8s.controlplane import free_port, wait_until

from .servers import Endpoint

MODULES = {"health": {"prober": "http", "timeout": "1s", "http": {"path": "/health"}}}
DISCOVERY = [{"namespace": "default", "service": "llm", "module": "health", "port": 80}]


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _metrics(url: str) -> str:
    try:
        return requests.get(f"{url}/metrics", timeout=5).text
    except requests.ConnectionError:
        return ""


class Exporter:
    def __init__(self, config: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen([sys.executable, "-m", "exporters.service.cli", "--config", str(config),
                                      "--listen", self.url.removeprefix("http://")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


def _static_probed_and_discovery(url: str, up: int) -> bool:
    text = _metrics(url)
    return (f"service_exporter_discovery_up {up}.0" in text
            and any(line.startswith("probe_success{") and line.endswith(" 1.0") and 'target="static-a"' in line
                    for line in text.splitlines()))


@pytest.mark.integration
@pytest.mark.parametrize("kubeconfig", ["missing", "unreachable", "in-cluster"])
def test_static_targets_are_probed_while_discovery_cannot_start(tmp_path, endpoint, kubeconfig):
    kube = {"missing": {"kubeconfig": str(tmp_path / "absent-kubeconfig")},
            "unreachable": {"kubeconfig": str(_unreachable_kubeconfig(tmp_path))},
            "in-cluster": {}}[kubeconfig]
    cfg = {"interval": "1s", "modules": MODULES, "discovery": DISCOVERY,
           "targets": [{"name": "static-a", "url": endpoint.url, "module": "health"}]}
    if kube:
        cfg["kubernetes"] = kube
    exp = Exporter(_write(tmp_path, cfg))
    try:
        wait_until(lambda: _static_probed_and_discovery(exp.url, 0), 30, what="static probed, discovery_up 0")
        assert exp.proc.poll() is None
        assert "service_exporter_discovery_errors_total" in _metrics(exp.url)
    finally:
        err = exp.stop()
    assert "Traceback" not in err, err
    assert "discovery" in err and ("kubeconfig" in err or "in-cluster" in err or "llm" in err), err


def _unreachable_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return path


@pytest.mark.integration
def test_nothing_to_probe_is_one_line_and_exit_2(tmp_path):
    cfg = {"interval": "1s", "modules": MODULES, "discovery": DISCOVERY,
           "kubernetes": {"kubeconfig": str(tmp_path / "absent-kubeconfig")}}
    exp = Exporter(_write(tmp_path, cfg))
    out, err = exp.proc.communicate(timeout=60)
    assert exp.proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("service-exporter: nothing to probe"), err
    assert "absent-kubeconfig" in lines[0]


@pytest.mark.k8s
@pytest.mark.integration
def test_discovery_starts_once_the_kubeconfig_appears(tmp_path, endpoint, k8s_api):
    later = tmp_path / "kubeconfig-later"
    cfg = {"interval": "1s", "modules": MODULES, "discovery": DISCOVERY, "kubernetes": {"kubeconfig": str(later)},
           "targets": [{"name": "static-a", "url": endpoint.url, "module": "health"}]}
    exp = Exporter(_write(tmp_path, cfg))
    try:
        wait_until(lambda: _static_probed_and_discovery(exp.url, 0), 30, what="discovery_up 0 first")
        shutil.copy(k8s_api.kubeconfig, later)
        wait_until(lambda: _static_probed_and_discovery(exp.url, 1), 60, what="discovery_up 1 after the retry")
    finally:
        err = exp.stop()
    assert "discovery started after" in err and "Traceback" not in err, err
