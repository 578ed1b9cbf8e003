"""`make bench`: run every benchmark and print one table."""

from __future__ import annotations

import sys

from bench import failover, gpu_exporter, pipeline, remediator, scale, service_exporter, storm

BENCHES = [gpu_exporter.run, remediator.run, scale.run, service_exporter.run, pipeline.run, failover.run,
           storm.run]


def main() -> int:
    rows: list[tuple[str, str, str, str]] = []
    for bench in BENCHES:
        rows.extend(bench())
    widths = [max(len(r[i]) for r in [("benchmark", "measured", "goal", "met"), *rows]) for i in range(4)]
    print()
    for r in [("benchmark", "measured", "goal", "met"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
