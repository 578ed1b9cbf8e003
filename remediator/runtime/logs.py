"""The remediator's log set-up: vigil_common.logs (JSON lines or text)."""

from __future__ import annotations

from vigil_common.logs import JsonFormatter, setup

__all__ = ["JsonFormatter", "setup"]
