"""Kubernetes label selectors evaluated locally, so the cluster cache can watch every node once and
still know which ones `kubernetes.node_selector` manages.

Grammar (as `kubectl -l`): requirements joined by commas; each is `key`, `!key`, `key=value`,
`key==value`, `key!=value`, `key in (a,b)` or `key notin (a,b)`."""

from __future__ import annotations

import re
from collections.abc import Callable

_SET = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP = re.compile(r"^\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s,()]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([^\s!=,()]+)\s*$")
Labels = dict[str, str]


def _split(selector: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def _requirement(text: str) -> Callable[[Labels], bool]:
    if m := _SET.match(text):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP.match(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(text):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise ValueError(f"not a label selector requirement: {text.strip()!r}")


def compile_selector(selector: str) -> Callable[[Labels], bool]:
    """A predicate on a label map; "" selects everything. ValueError on bad syntax."""
    reqs = [_requirement(p) for p in _split(selector or "")]
    return lambda labels: all(r(labels) for r in reqs)
