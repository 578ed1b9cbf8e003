"""`remediator check-config`: every mistake in a vigil.yaml at once, each with its file, YAML path
and line, like `promtool check config` and `amtool check-config`. Secrets (token files, environment
variables) are checked only with --check-secrets; otherwise a missing one is a note, so a config
can be checked on a laptop or in CI where the secrets are not."""

from __future__ import annotations

from dataclasses import dataclass

from remediator.config import Config, parse_config
from vigil_common.config import ConfigError, Marks, collecting, load_yaml_marked


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}" + (f" (at {self.path})" if self.path else "")


@dataclass(frozen=True)
class Report:
    config: Config | None
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


def check(path: str, *, check_secrets: bool = False) -> Report:
    try:
        data, marks = load_yaml_marked(path)
    except ConfigError as exc:
        return Report(None, (Problem(path, None, "", str(exc).removeprefix(f"{path}: ")),), ())
    config = None
    with collecting(check_secrets=check_secrets) as found:
        try:
            config = parse_config(data, path)
        except ConfigError as exc:  # one the parser could not step over
            found.errors.append(exc)
        except Exception as exc:  # a value so broken that checking could not go on: say so, keep what was found
            found.errors.append(ConfigError(f"{path}: checking stopped early ({type(exc).__name__}: {exc}); "
                                            "fix the errors above and run it again"))
    errors = sorted((_problem(e, path, marks) for e in found.errors), key=lambda p: (p.line or 0))
    notes = tuple(_problem(n, path, marks) for n in found.notes)
    return Report(config if not errors else None, tuple(errors), notes)
