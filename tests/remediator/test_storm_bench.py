"""The storm-recovery bench (bench/storm.py) in a small mode on the session's local cluster, so a
broken bench fails CI: 4 faults, budget 2, a 1 s ladder. Only that it runs and never exceeds the
budget is asserted here; the 1.2x goal is the bench's (per-round overheads weigh more at L = 1 s)."""

from __future__ import annotations

import pytest

from bench import storm

pytestmark = pytest.mark.k8s


def test_storm_bench_small_mode_runs_and_keeps_the_budget(k8s_cluster, tmp_path, unique):
    m = storm.measure(k8s_cluster, tmp_path, n=4, k=2, ladder=1.0, pool=f"storm-{unique}")
    assert m["peak"] <= 2, m
    assert m["total"] >= m["ideal"] == 2.0, m  # no node came back before its repair
    assert m["total"] <= 3 * m["ideal"] + 10, m
    assert not m["errors"], m["errors"]
    name, measured, _goal, met = storm.row(m)
    assert name.startswith("storm recovery, 4 faults") and "peak" in measured and met in ("yes", "no")
