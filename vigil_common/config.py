"""Reading a YAML config section by section: every error names the file, the section and the key,
and unknown keys are errors (a typo in a safety setting must not pass silently). Shared by the
remediator's vigil.yaml and the service exporter's services.yaml.

Normally the first error raises ConfigError. Inside `collecting()` (check-config) errors are
recorded instead and reading goes on with the default, so one run reports every mistake; each
error keeps the mapping and key it is about, which `Marks` turns into a YAML path and a line."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from vigil_common.durations import parse_duration

T = TypeVar("T")


class ConfigError(ValueError):
    def __init__(self, message: str, at: tuple[Any, Any] | None = None) -> None:
        super().__init__(message)
        self.at = at  # (the mapping or list, the key or index) the error is about, for its line


@dataclass
class Collector:
    """What one check-config run found: errors, and notes (secrets not checked, and the like)."""
    check_secrets: bool = False
    errors: list[ConfigError] = field(default_factory=list)
    notes: list[ConfigError] = field(default_factory=list)


_COLLECTOR: ContextVar[Collector | None] = ContextVar("vigil_config_collector", default=None)


@contextlib.contextmanager
def collecting(*, check_secrets: bool = False) -> Iterator[Collector]:
    c = Collector(check_secrets=check_secrets)
    token = _COLLECTOR.set(c)
    try:
        yield c
    finally:
        _COLLECTOR.reset(token)


def collector() -> Collector | None:
    return _COLLECTOR.get()


def report(err: ConfigError) -> None:
    """Raise the error, or, while collecting, record it so that reading goes on."""
    c = _COLLECTOR.get()
    if c is None:
        raise err
    c.errors.append(err)


def guarded(fn: Callable[[], T], at: tuple[Any, Any] | None = None) -> T | None:
    """fn(); while collecting, an error it raises is recorded (at `at` unless it knows better) and
    the result is None, so that the next rule or action is still checked."""
    if _COLLECTOR.get() is None:
        return fn()
    try:
        return fn()
    except ConfigError as exc:
        if exc.at is None:
            exc.at = at
        report(exc)
        return None


class Section:
    """A mapping read with a path for errors and a check for unknown keys."""

    def __init__(self, raw: Any, where: str, known: tuple[str, ...]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            report(ConfigError(f"{where}: must be a mapping", at=(raw, None)))
            raw = {}
        for k in sorted((k for k in raw if k not in known), key=str):
            report(ConfigError(f"{where}: unknown key {k!r} (known: {', '.join(known)})", at=(raw, k)))
        self.raw, self.where = raw, where

    def key(self, k: str) -> str:
        return f"{self.where}: key {k!r}"

    def err(self, k: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.key(k)}: {msg}", at=(self.raw, k))

    def fail(self, k: str, msg: str) -> None:
        """Report an error about key `k` (raises unless collecting)."""
        report(self.err(k, msg))

    def get(self, k: str, default: Any = None) -> Any:
        return self.raw.get(k, default)

    def number(self, k: str, default: Any, *, integer: bool = False, minimum: float = 0,
               maximum: float = math.inf) -> Any:
        v = self.raw.get(k, default)
        if v is None:
            if default is not None:  # `key:` left empty where a number is needed (no limit is not a value)
                self.fail(k, "expected a number, got null")
                return default
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
            self.fail(k, f"expected {'an integer' if integer else 'a number'}, got {v!r}")
            return default
        if not math.isfinite(v):  # .nan compares false with every limit it is meant to be
            self.fail(k, f"expected a finite number, got {v!r}")
            return default
        if v < minimum:
            self.fail(k, f"must be at least {minimum}")
            return default
        if v > maximum:
            self.fail(k, f"must be at most {maximum}")
            return default
        return v

    def duration(self, k: str, default: float, *, positive: bool = False) -> float:
        v = self.raw.get(k)
        if v is None:
            return default
        try:
            seconds = parse_duration(v)
        except ValueError as exc:
            self.fail(k, str(exc))
            return default
        if positive and seconds <= 0:
            self.fail(k, "must be positive")
            return default
        return seconds

    def boolean(self, k: str, default: bool) -> bool:
        v = self.raw.get(k, default)
        if not isinstance(v, bool):
            self.fail(k, f"expected true or false, got {v!r}")
            return default
        return v

    def string(self, k: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self.raw.get(k, default)
        if v is None and required:
            self.fail(k, "required")
        if v is not None and not isinstance(v, str):
            self.fail(k, f"expected a string, got {v!r}")
            return default
        return v

    def str_map(self, k: str) -> dict[str, str]:
        v = self.raw.get(k) or {}
        if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
            self.fail(k, "expected a mapping of strings")
            return {}
        return dict(v)


def load_yaml(path: str | os.PathLike) -> Any:
    """The document at `path`; a missing file or bad YAML is a ConfigError naming the file."""
    return load_yaml_marked(path)[0]


class Marks:
    """Where each mapping key and list item of a loaded document is: its YAML path and line."""

    def __init__(self) -> None:
        self._at: dict[tuple[int, Any], tuple[str, int]] = {}
        self._containers: dict[int, tuple[str, int]] = {}
        self._keep: list[Any] = []  # the containers stay alive, so their ids stay theirs

    def add(self, node: yaml.Node, data: Any, path: str) -> None:
        self._keep.append(data)
        self._containers[id(data)] = (path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
            for knode, vnode in node.value:
                key = knode.value if knode.value in data else _int_key(knode.value, data)
                sub = f"{path}.{key}" if path else str(key)
                self._at[(id(data), key)] = (sub, knode.start_mark.line + 1)
                if isinstance(data.get(key), dict | list):
                    self.add(vnode, data[key], sub)
        elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
            for i, (vnode, item) in enumerate(zip(node.value, data, strict=False)):
                sub = f"{path}[{i}]"
                self._at[(id(data), i)] = (sub, vnode.start_mark.line + 1)
                if isinstance(item, dict | list):
                    self.add(vnode, item, sub)

    def locate(self, at: tuple[Any, Any] | None) -> tuple[str, int] | None:
        """(YAML path, line) of an error's (container, key); the container's own place if the key
        is not in it (a missing key), None if the container is not from the document."""
        if at is None:
            return None
        container, key = at
        return self._at.get((id(container), key)) or self._containers.get(id(container))


def _int_key(text: str, data: dict) -> Any:
    with contextlib.suppress(ValueError):
        if int(text) in data:
            return int(text)
    return text


MAX_DEPTH = 64  # nesting of mappings and lists (a real config is under 15 deep)
MAX_VALUES = 100_000  # values once aliases are expanded (a real config has a few thousand)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_shape(root: yaml.Node, path: str | os.PathLike) -> None:
    """Bounded before anything walks the document: an alias that contains itself, nesting deeper than
    MAX_DEPTH, or aliases expanding to more than MAX_VALUES values (25 doubling aliases are 2^25) is a
    ConfigError. Iterative, each node once: its expanded size is memoised."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_VALUES:
                raise ConfigError(f"{path}: the document expands to more than {MAX_VALUES} values through YAML "
                                  f"aliases (line {node.start_mark.line + 1})")
            continue
        if key in size:
            continue
        if key in open_:
            raise ConfigError(f"{path}: a YAML alias refers to a collection that contains it "
                              f"(line {node.start_mark.line + 1})")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{path}: nested deeper than {MAX_DEPTH} levels (line {node.start_mark.line + 1})")
        open_.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in size)


def _check_duplicates(root: yaml.Node, path: str | os.PathLike) -> None:
    """A key twice in one mapping is an error naming both lines (PyYAML's SafeLoader silently keeps
    the last one; amtool and promtool refuse it). Every duplicate of the document in one error."""
    found: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for knode, _ in node.value:
                if not isinstance(knode, yaml.ScalarNode) or knode.tag == "tag:yaml.org,2002:merge":
                    continue
                line = knode.start_mark.line + 1
                if knode.value in first:
                    found.append((line, f"{path}:{line}: duplicate key {knode.value!r} "
                                        f"(first at line {first[knode.value]})"))
                else:
                    first[knode.value] = line
        stack.extend(_children(node))
    if found:
        raise ConfigError("\n".join(m for _, m in sorted(found)))


def _yaml_error(path: str | os.PathLike, exc: yaml.YAMLError) -> ConfigError:
    """`file:line:col: problem`, as compilers and promtool say it (the mark YAML points at)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return ConfigError(f"{path}: not valid YAML: {exc}")
    what = getattr(exc, "problem", None) or "not valid YAML"
    context = getattr(exc, "context", None)
    return ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {what}"
                       + (f" ({context})" if context else ""))


def load_yaml_marked(path: str | os.PathLike) -> tuple[Any, Marks]:
    """The document and its Marks; a missing file, bad YAML (as file:line:col) or a key given twice
    (both lines) is a ConfigError naming the file."""
    try:
        with open(path) as f:
            loader = yaml.SafeLoader(f)
            try:
                node = loader.get_single_node()
                if node is not None:
                    _check_shape(node, path)
                    _check_duplicates(node, path)
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from exc
    except RecursionError as exc:  # PyYAML's composer recurses once per level
        raise ConfigError(f"{path}: nested too deeply to read") from exc
    marks = Marks()
    if node is not None:
        marks.add(node, data, "")
    return data, marks
