"""`remediator check-config`: every mistake in a vigil.yaml at once, each with its file, YAML path
and line, like `promtool check config` and `amtool check-config`. Secrets (token files, environment
variables) are checked only with --check-secrets; otherwise a missing one is a note, so a config
can be checked on a laptop or in CI where the secrets are not."""

from __future__ import annotations

from remediator.config import parse_config
from vigil_common.checking import Problem, Report, check_file

__all__ = ["Problem", "Report", "check"]


def check(path: str, *, check_secrets: bool = False) -> Report:
    return check_file(path, parse_config, check_secrets=check_secrets)
