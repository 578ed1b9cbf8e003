"""`promtool check metrics` on a real scrape: the exposition follows Prometheus conventions."""

from __future__ import annotations

import shutil
import subprocess

from .conftest import wait_for


def test_promtool_check_metrics_is_clean(exporter, sim):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs the Debian package prometheus"
    for gpu, fault in ((1, "overtemp"), (2, "power_brake"), (4, "row_remap_pending"), (5, "lost")):
        sim.inject(gpu, fault)
    sim.inject(3, "xid", 79)
    assert wait_for(lambda: b'xid="79"} 1.0' in exporter.exposition())
    body = exporter.exposition()
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout + r.stderr).decode()
