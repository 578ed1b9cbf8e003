"""Log set-up: JSON lines (one object per line, for log pipelines) or plain text."""

from __future__ import annotations

import datetime as dt
import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(), "level": record.levelname,
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str = "INFO", fmt: str = "json") -> None:
    """Log lines to stderr: one JSON object per line (for log pipelines) or plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
