"""Where the runbooks live: one URL template for the rules' `runbook_url`, the fast path's pushed
alerts and the dashboards' links."""

from __future__ import annotations

RUNBOOK_URL = "https://github.com/vigil-gpu/vigil/blob/main/docs/runbooks/{alertname}.md"
RUNBOOK_BASE = RUNBOOK_URL.rsplit("/", 1)[0]


def runbook_url(alertname: str) -> str:
    return RUNBOOK_URL.format(alertname=alertname)
