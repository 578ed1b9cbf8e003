"""`remediator example-config`: print or write the examples, rules, dashboards, provisioning and
runbooks shipped in the wheel (package `vigil_data`), so an installed Vigil needs no source checkout."""

from __future__ import annotations

import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

PACKAGE = "vigil_data"
DEFAULT = "vigil.yaml"


def shipped() -> dict[str, Traversable]:
    """Every shipped file by its relative name (e.g. `rules/gpu.yml`), sorted."""
    out: dict[str, Traversable] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, f"{name}/")
            elif not child.name.endswith((".py", ".pyc")):
                out[name] = child

    walk(resources.files(PACKAGE), "")
    return dict(sorted(out.items()))


def write_all(target: Path, *, force: bool) -> tuple[list[str], list[str]]:
    """Write every shipped file under `target`; existing files are kept unless `force`. (written, kept)."""
    written, kept = [], []
    for name, src in shipped().items():
        dest = target / name
        if dest.exists() and not force:
            kept.append(name)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
        written.append(name)
    return written, kept


def run(name: str | None, *, list_only: bool, write: Path | None, force: bool) -> int:
    """The subcommand: 0, or 2 with one line on stderr for a name that is not shipped."""
    files = shipped()
    if list_only:
        print("\n".join(files))
        return 0
    if write is not None:
        written, kept = write_all(write, force=force)
        print(f"wrote {len(written)} files under {write}" + (f"; kept {len(kept)} existing (--force overwrites)"
                                                              if kept else ""))
        return 0
    name = name or DEFAULT
    if name not in files:
        print(f"remediator: no shipped file {name!r}; `remediator example-config --list` names them",
              file=sys.stderr)
        return 2
    sys.stdout.write(files[name].read_text(encoding="utf-8"))
    return 0
