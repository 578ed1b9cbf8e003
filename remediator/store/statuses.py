"""What the ledgers (SQLite and Kubernetes) write for a decision and for a finished chain, in one
place, so the two backends can never disagree.

An incident's life: pending (new) -> decided: acting (a plan runs), waiting (held by a rail that can
clear: it keeps its place in the queue), deferred (decided again at not_before), or final: blocked
(refused by the policy), dry_run, ignored (no rule), cancelled (resolved before anything ran),
handed_over (waited longer than max_wait, or given to people). A chain ends succeeded, failed or
blocked."""

from __future__ import annotations

STATUS_OF = {"act": "acting", "dry_run": "dry_run", "wait": "waiting", "blocked": "blocked", "defer": "deferred",
             "no_match": "ignored", "resolved": "resolved", "handed_over": "handed_over", "joined": "joined"}
ACTION_STATE_OF = {"act": "planned", "dry_run": "dry_run", "blocked": "blocked"}
DECIDABLE = ("pending", "deferred", "waiting")  # statuses the engine (re)decides
TERMINAL = ("succeeded", "failed", "blocked", "dry_run", "cancelled", "ignored", "resolved", "handed_over", "joined")
def final_status(states: set[str]) -> str:
    """An incident's status once its chain is done, saying what happened to the cluster: a chain
    cut short by a resolve after something ran is `succeeded` (it changed the cluster), never
    `cancelled`."""
    if "blocked" in states:
        return "blocked"
    if "failed" in states:
        return "failed"
    return "succeeded" if "succeeded" in states else "cancelled"


RESOLVED_MIDWAY = ("resolved_during_execution", "the alert resolved during execution; what ran is kept (on_resolved "
                   "follow-ups run, a node taken out is returned), the rest was cancelled")
RESOLVED_BEFORE = ("resolved", "the alert resolved before the action ran")


def on_resolve(status: str, states: set[str]) -> tuple[str, str, str] | None:
    """What a resolve makes of an incident whose planned actions it just cancelled: (status, reason,
    detail), or None to leave it (a running action finishes it; a final one stays). One that changed
    the cluster (a cordon ran, then it waited or stood between two steps) is `succeeded` and its
    follow-ups run, so a node it took out comes back; one that changed nothing is `cancelled`."""
    if "running" in states or (status not in DECIDABLE and status != "acting"):
        return None
    if "succeeded" in states:
        return ("succeeded", *RESOLVED_MIDWAY)
    return ("cancelled", *RESOLVED_BEFORE)
