"""Fault -> action through the whole pipeline: the fast path and the pull path side by side."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.pipeline import Pipeline


def run(*, smoke: bool = False) -> list[tuple[str, str, str, str]]:
    """The pipeline has no size to shrink: smoke runs it whole."""
    del smoke
    p = Pipeline(Path(tempfile.mkdtemp(prefix="vigil-bench-")) / "pipeline")
    try:
        p.start()
        fast, pull = p.xid_timeline("gpu-node-0"), p.xid_timeline("gpu-node-2")
    finally:
        p.stop()
    floors = p.floors()
    rows = []
    for tl in (fast, pull):
        rows.append((f"XID 79 -> webhook received, {tl.path} path", tl.hop(tl.received).strip(),
                     f"floor {floors[tl.path]}", ""))
        met = tl.acted is not None and (tl.path != "fast" or tl.acted - tl.injected <= 2.0)
        rows.append((f"XID 79 -> node cordoned, {tl.path} path", tl.hop(tl.acted).strip(),
                     "<= 2 s" if tl.path == "fast" else "(managed auto-repair: ~10 min)",
                     ("yes" if met else "no") if tl.path == "fast" else ""))
    return rows
