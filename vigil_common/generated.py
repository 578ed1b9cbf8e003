"""Write generated files, or check that the committed ones are current (`make alerts`,
`make dashboards`, and the tests that fail on a stale file)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(files: dict[Path, str], root: Path, *, check: bool, target: str) -> int:
    """Write the generated files, or (check) report those whose committed text differs: exit 1."""
    stale = []
    for path, text in files.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(root)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"stale (run `make {target}`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
