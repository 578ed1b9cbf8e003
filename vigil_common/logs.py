"""Logging for all three commands: JSON lines (one object per line, for log pipelines; the default)
or plain text, with the same --log-level / --log-format / --version flags everywhere."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(), "level": record.levelname,
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _shows_default(action: argparse.Action) -> bool:
    d = action.default
    return bool(action.option_strings) and d is not None and d is not False and d != [] and d != argparse.SUPPRESS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help (unless its help already names it); the description (a
    module docstring) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)".strip()


def document_defaults(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give options without help a line, so that their defaults show too (subcommands included)."""
    for action in p._actions:
        if action.help is None and _shows_default(action):
            action.help = "(default: %(default)s)"
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                document_defaults(sub)
    return p


def add_arguments(p: argparse.ArgumentParser, version: str, *, logging_flags: bool = True) -> None:
    """--version, and --log-level / --log-format."""
    p.add_argument("--version", action="version", version=f"%(prog)s {version}")
    if logging_flags:
        p.add_argument("--log-level", default="INFO", choices=LEVELS)
        p.add_argument("--log-format", default="json", choices=("json", "text"), help="log lines as JSON or text")
