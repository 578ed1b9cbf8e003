"""Alertmanager v4 webhook bodies for tests, shaped like the real ones (see alertmanager-webhook.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def alert(labels: dict[str, str], *, status: str = "firing", starts_at: dt.datetime | None = None,
          annotations: dict[str, str] | None = None) -> dict:
    starts = starts_at or dt.datetime.now(dt.UTC)
    ends = "0001-01-01T00:00:00Z" if status == "firing" else dt.datetime.now(dt.UTC).isoformat()
    return {"status": status, "labels": labels, "annotations": annotations or {"summary": "test"},
            "startsAt": starts.isoformat().replace("+00:00", "Z"), "endsAt": ends,
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fingerprint(labels)}


def xid_labels(node: str, gpu: str = "3", xid: str = "79") -> dict[str, str]:
    return {"alertname": "GpuXidCritical", "node": node, "gpu": gpu, "uuid": f"GPU-{node}-{gpu}", "xid": xid,
            "severity": "critical"}


def body(*alerts: dict, status: str | None = None) -> dict:
    firing = any(a["status"] == "firing" for a in alerts)
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0,
            "status": status or ("firing" if firing else "resolved"), "receiver": "vigil-remediator",
            "groupLabels": {}, "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
            "alerts": list(alerts)}
