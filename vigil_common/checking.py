"""`check-config` for every component: every mistake in a config file at once, each as
`file:line[:col]: message (at yaml.path)`, like `promtool check config` and `amtool check-config`.
A file that does not load (bad YAML, a key given twice) reports each of its problems the same way."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vigil_common.config import ConfigError, Marks, collecting, load_yaml_marked

_LOCATED = re.compile(r"(?P<line>[0-9]+)(?::(?P<col>[0-9]+))?: (?P<message>.*)", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str
    col: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "") + (f":{self.col}" if self.line and self.col else "")
        return f"{where}: {self.message}" + (f" (at {self.path})" if self.path else "")


@dataclass(frozen=True)
class Report:
    config: Any  # the parsed config, None when there are errors
    errors: tuple[Problem, ...]
    notes: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def _problem(err: ConfigError, file: str, marks: Marks | None) -> Problem:
    message = str(err).removeprefix(f"{file}: ")
    place = marks.locate(err.at) if marks is not None else None
    path, line = place if place else ("", None)
    return Problem(file, line, path, message)


def _load_problems(err: ConfigError, file: str) -> tuple[Problem, ...]:
    """A load error's lines, each `file:line[:col]: message` or `file: message`."""
    out = []
    for text in str(err).splitlines():
        rest = text.removeprefix(f"{file}:")
        m = _LOCATED.fullmatch(rest) if rest != text else None
        if m:
            out.append(Problem(file, int(m["line"]), "", m["message"], int(m["col"]) if m["col"] else None))
        else:
            out.append(Problem(file, None, "", text.removeprefix(f"{file}: ")))
    return tuple(out)


def check_file(path: str, parse: Callable[[Any, str], Any], *, check_secrets: bool = False) -> Report:
    """Load `path` and run `parse(data, path)` collecting every error (see vigil_common.config.report)."""
    try:
        data, marks = load_yaml_marked(path)
    except ConfigError as exc:
        return Report(None, _load_problems(exc, path), ())
    config = None
    with collecting(check_secrets=check_secrets) as found:
        try:
            config = parse(data, path)
        except ConfigError as exc:  # one the parser could not step over
            found.errors.append(exc)
        except Exception as exc:  # a value so broken that checking could not go on: say so, keep what was found
            found.errors.append(ConfigError(f"{path}: checking stopped early ({type(exc).__name__}: {exc}); "
                                            "fix the errors above and run it again"))
    errors = sorted((_problem(e, path, marks) for e in found.errors), key=lambda p: (p.line or 0))
    notes = tuple(_problem(n, path, marks) for n in found.notes)
    return Report(config if not errors else None, tuple(errors), notes)
