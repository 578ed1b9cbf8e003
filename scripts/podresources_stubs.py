"""Generate the PodResources v1 stubs from the vendored proto (grpcio-tools, pinned in the dev extras).

    python scripts/podresources_stubs.py           # write exporters/gpu/podresources/v1/api_pb2*.py
    python scripts/podresources_stubs.py --check   # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "exporters/gpu/podresources/v1/api.proto"
OUTPUTS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate(out: Path) -> dict[str, bytes]:
    from grpc_tools import protoc  # dev-only: grpcio-tools

    (out / Path(PROTO).parent).mkdir(parents=True, exist_ok=True)
    # -I the repository root, so the generated grpc module imports `exporters.gpu.podresources.v1`
    rc = protoc.main(["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}",
                      f"--grpc_python_out={out}", str(ROOT / PROTO)])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")
    return {name: (out / Path(PROTO).parent / name).read_bytes() for name in OUTPUTS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    target = ROOT / Path(PROTO).parent
    stale = [n for n, data in fresh.items() if not (target / n).exists() or (target / n).read_bytes() != data]
    if args.check:
        if stale:
            print("stale (run `make podresources-stubs`): " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for name, data in fresh.items():
        (target / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
