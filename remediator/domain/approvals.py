"""Approvals: a person's word on one gated step of one incident. A step is named by its action and
target ("reboot_node(node-7)"), so the word holds however often the incident is decided again.
An approval lasts `approval_ttl`; a denial lasts and hands the incident to people. Pure data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from remediator.domain.models import PlannedAction

PENDING, APPROVED, DENIED = "pending", "approved", "denied"


def step_key(p: PlannedAction) -> str:
    return f"{p.type}({p.target})"


@dataclass(frozen=True)
class Approval:
    """verdict: pending (asked, not answered) | approved | denied; by: the credential's name."""
    verdict: str
    at: dt.datetime
    by: str = ""
    reason: str = ""

    def valid(self, now: dt.datetime, ttl: float) -> bool:
        """An approval that still lets its step start (it expires after `ttl` s)."""
        return self.verdict == APPROVED and (now - self.at).total_seconds() < ttl


# incident id -> step -> its approval
Approvals = Mapping[int, Mapping[str, Approval]]
