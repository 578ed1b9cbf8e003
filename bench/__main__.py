"""`make bench`: run every benchmark and print one table.

A benchmark that fails gives one row saying why and the others still run, so the table is always
printed; the exit status is 1 when any benchmark failed. `--smoke` runs each benchmark at a size
that only proves it works (the rows' figures are not measurements); `tests/bench` runs that."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from bench import failover, gpu_exporter, pipeline, remediator, scale, service_exporter, storm

Row = tuple[str, str, str, str]
BENCHES: dict[str, Callable[..., list[Row]]] = {
    "gpu_exporter": gpu_exporter.run, "remediator": remediator.run, "scale": scale.run,
    "service_exporter": service_exporter.run, "pipeline": pipeline.run, "failover": failover.run,
    "storm": storm.run,
}
HEADER: Row = ("benchmark", "measured", "goal", "met")


def failed_row(name: str, exc: BaseException) -> Row:
    """One row for a benchmark that raised: its name and the error's first line."""
    text = (str(exc).strip().splitlines() or [""])[0][:160]
    return (f"{name}: FAILED", f"{type(exc).__name__}: {text}" if text else type(exc).__name__, "", "no")


def run_benches(names: Sequence[str], *, smoke: bool = False) -> tuple[list[Row], list[str]]:
    """Every named benchmark's rows, in order, and the names of those that failed."""
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        try:
            rows.extend(BENCHES[name](smoke=smoke))
        except Exception as exc:  # one broken benchmark must not cost the table
            traceback.print_exc(file=sys.stderr)
            rows.append(failed_row(name, exc))
            failed.append(name)
    return rows, failed


def table(rows: Sequence[Row]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [HEADER, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"benchmarks to run (default: all of {', '.join(BENCHES)})")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: proves each benchmark runs, measures nothing")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHES)})")
    rows, failed = run_benches(args.names or list(BENCHES), smoke=args.smoke)
    print()
    print(table(rows))
    if failed:
        print(f"\n{len(failed)} benchmark(s) failed: {', '.join(failed)} (tracebacks above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
