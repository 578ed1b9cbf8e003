"""The outcome of one executed action, as the ledger records it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    state: str  # succeeded | failed | blocked | interrupted (stopping: left to resume after the restart)
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def as_result(self) -> dict[str, Any]:
        return {"detail": self.detail, "reason": self.reason or self.state, **self.data}
