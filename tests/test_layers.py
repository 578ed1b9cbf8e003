"""The package layering `make lint` enforces, in the test suite too: no product package
(exporters, alerts, remediator, dashboards) imports another, and vigil_common imports none."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_hold():
    beside = Path(sys.executable).parent / "lint-imports"  # the venv's, also when its bin is not on PATH
    lint_imports = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert lint_imports, "lint-imports is missing: it comes with the dev extras (import-linter)"
    r = subprocess.run([lint_imports, "--no-cache"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
