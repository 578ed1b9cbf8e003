"""The wheel as a user gets it: built without warnings, LICENSE and SPDX license in the metadata, the
examples, rules, dashboards, provisioning and runbooks inside, and every console script working from a
fresh venv outside the source tree (dependencies resolved from the wheel's own metadata by pip)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["vigil.yaml", "services.yaml", "alertmanager.yml", "prometheus.yml", "prometheus-kubernetes.yml",
           "rules/gpu.yml", "rules/service.yml", "rules/vigil.yml", "dashboards/gpu-fleet.json",
           "provisioning/dashboards/vigil.yaml", "provisioning/datasources/prometheus.yaml",
           "runbooks/GpuXidCritical.md", "crds/vigil.io.yaml"]


def _run(cmd: list[str], *, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # else distutils says so
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(REPO)], cwd=out, env=env)
    (path,) = out.glob("vigil-*.whl")
    return path, r.stdout + r.stderr


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(home / "v")], cwd=home)
    _run([str(home / "v/bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel[0])], cwd=home)
    return home / "v/bin"


def test_the_build_prints_no_warning(wheel):
    _, log = wheel
    noisy = [line for line in log.splitlines() if re.search(r"deprecat|warning", line, re.I)]
    assert not noisy, "\n".join(noisy)


def test_the_wheel_holds_license_and_data(wheel):
    with zipfile.ZipFile(wheel[0]) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        license_text = z.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    for name in SHIPPED:
        assert f"vigil_data/{name}" in names, name
    assert "remediator/examples/vigil.yaml" in names and "exporters/service/examples/services.yaml" in names


def test_the_wheel_holds_the_crds_and_says_what_it_is(wheel):
    """The CRDs the Kubernetes ledger needs (`remediator example-config crds/vigil.io.yaml | kubectl apply
    --server-side -f -`), classifiers and project URLs for the index page."""
    with zipfile.ZipFile(wheel[0]) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        crds = z.read("vigil_data/crds/vigil.io.yaml")
    assert crds == (REPO / "deploy/crds/vigil.io.yaml").read_bytes()
    for line in ("Classifier: Topic :: System :: Monitoring", "Classifier: Programming Language :: Python :: 3.11",
                 "Project-URL: Source, https://github.com/vigil-gpu/vigil",
                 "Project-URL: Issues, https://github.com/vigil-gpu/vigil/issues"):
        assert line in meta, line


def test_console_scripts_run_from_a_fresh_venv(venv, tmp_path):
    where = _run([str(venv / "python"), "-c", "import remediator, exporters, vigil_data; "
                  "print(remediator.__file__, exporters.__file__, vigil_data.__file__)"], cwd=tmp_path).stdout
    assert str(REPO) not in where and where.count(str(venv.parent)) == 3, where
    for script in ("gpu-exporter", "service-exporter", "remediator"):
        assert "usage:" in _run([str(venv / script), "--help"], cwd=tmp_path).stdout
    listed = _run([str(venv / "remediator"), "example-config", "--list"], cwd=tmp_path).stdout.split()
    assert set(SHIPPED) <= set(listed)
    example = _run([str(venv / "remediator"), "example-config"], cwd=tmp_path).stdout
    assert example == (REPO / "remediator/examples/vigil.yaml").read_text()
    (tmp_path / "vigil.yaml").write_text(example)
    env = {**os.environ, "VIGIL_WEBHOOK_TOKEN": "not-a-real-token"}
    checked = _run([str(venv / "remediator"), "check-config", "vigil.yaml"], cwd=tmp_path, env=env).stdout
    assert "ok (" in checked
    _run([str(venv / "remediator"), "example-config", "--write", "shipped"], cwd=tmp_path)
    assert (tmp_path / "shipped/rules/gpu.yml").read_text() == (REPO / "alerts/rules/gpu.yml").read_text()
    assert (tmp_path / "shipped/runbooks/GpuLost.md").read_text() == (REPO / "docs/runbooks/GpuLost.md").read_text()
    missing = subprocess.run([str(venv / "remediator"), "example-config", "no-such.yaml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no shipped file" in missing.stderr and "Traceback" not in missing.stderr
