"""Prometheus text format (0.0.4) for the GPU collector's samples, byte-identical to
prometheus_client's `generate_latest` (a test holds them equal) but about five times cheaper.

Why: `generate_latest` escapes and formats every label set on every scrape, which is most of a
scrape's cost for the ~1,100 series of an 8-GPU node; our label sets hardly ever change, so each
series' text prefix is built once. The block of a shared collection is rendered once for all
the scrapes that share it.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.utils import floatToGoString

from exporters.gpu.device import Sample
from exporters.gpu.metrics import SPECS

_MAX_CACHE = 100_000  # series prefixes; a GPU node has ~1,100, so this only bounds a leak


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str) -> str:
    spec = SPECS[name]
    doc = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {spec.kind}\n"


class Renderer:
    def __init__(self) -> None:
        self._prefix: dict[tuple[str, tuple[str, ...]], str] = {}
        self._blocks: dict[str, tuple[object, str]] = {}

    def _line(self, s: Sample) -> str:
        key = (s.name, s.labels)
        prefix = self._prefix.get(key)
        if prefix is None:
            if len(self._prefix) > _MAX_CACHE:
                self._prefix.clear()
            pairs = sorted(zip(SPECS[s.name].labels, s.labels, strict=True))
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
            prefix = self._prefix[key] = f"{s.name}{{{labels}}} " if labels else f"{s.name} "
        return prefix + floatToGoString(s.value) + "\n"

    def block(self, samples: Iterable[Sample]) -> str:
        """One run of families; each name must not appear in any other block."""
        out: list[str] = []
        current = None
        seen: dict[str, list[str]] = {}
        for s in samples:
            if s.name != current:
                current = s.name
                lines = seen.get(current)
                if lines is None:
                    lines = seen[current] = [_header(current)]
            lines.append(self._line(s))
        for lines in seen.values():
            out.extend(lines)
        return "".join(out)

    def cached_block(self, slot: str, key: object, samples: Iterable[Sample]) -> str:
        """`block`, reused while `key` (a shared snapshot, a version) is unchanged for `slot`."""
        cached = self._blocks.get(slot)
        if cached is not None and cached[0] is key:
            return cached[1]
        text = self.block(samples)
        self._blocks[slot] = (key, text)
        return text
