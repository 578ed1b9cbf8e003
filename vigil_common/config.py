"""Reading a YAML config section by section: every error names the file, the section and the key,
and unknown keys are errors (a typo in a safety setting must not pass silently). Shared by the
remediator's vigil.yaml and the service exporter's services.yaml."""

from __future__ import annotations

import os
from typing import Any

import yaml

from vigil_common.durations import parse_duration


class ConfigError(ValueError):
    pass


class Section:
    """A mapping read with a path for errors and a check for unknown keys."""

    def __init__(self, raw: Any, where: str, known: tuple[str, ...]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a mapping")
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        self.raw, self.where = raw, where

    def key(self, k: str) -> str:
        return f"{self.where}: key {k!r}"

    def err(self, k: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.key(k)}: {msg}")

    def get(self, k: str, default: Any = None) -> Any:
        return self.raw.get(k, default)

    def number(self, k: str, default: Any, *, integer: bool = False, minimum: float = 0) -> Any:
        v = self.raw.get(k, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
            raise ConfigError(f"{self.key(k)}: expected {'an integer' if integer else 'a number'}, got {v!r}")
        if v < minimum:
            raise ConfigError(f"{self.key(k)}: must be at least {minimum}")
        return v

    def duration(self, k: str, default: float, *, positive: bool = False) -> float:
        v = self.raw.get(k)
        if v is None:
            return default
        try:
            seconds = parse_duration(v)
        except ValueError as exc:
            raise ConfigError(f"{self.key(k)}: {exc}") from exc
        if positive and seconds <= 0:
            raise self.err(k, "must be positive")
        return seconds

    def boolean(self, k: str, default: bool) -> bool:
        v = self.raw.get(k, default)
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(k)}: expected true or false, got {v!r}")
        return v

    def string(self, k: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self.raw.get(k, default)
        if v is None and required:
            raise self.err(k, "required")
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"{self.key(k)}: expected a string, got {v!r}")
        return v

    def str_map(self, k: str) -> dict[str, str]:
        v = self.raw.get(k) or {}
        if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
            raise self.err(k, "expected a mapping of strings")
        return dict(v)


def load_yaml(path: str | os.PathLike) -> Any:
    """The document at `path`; a missing file or bad YAML is a ConfigError naming the file."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
