"""A VigilIncident object (vigil.io/v1alpha1) as plain data, and every state transition the ledger
makes on it, as pure functions on the dict. The Kubernetes ledger reads an object, applies one of
these to a copy and writes it back with the resourceVersion it read (compare-and-swap).

Layout: `spec` is what Alertmanager said (fingerprint, startsAt, labels, annotations; never changes),
`status` is Vigil's (status, decision, actions, verification, a capped audit trail). Ids are
integers as in the SQLite ledger: the incident's from its name's hash, an action's = incident id *
256 + seq. Objects stay far below etcd's 1.5 MiB request limit: strings, lists and the audit trail
are capped, and what is dropped is counted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from remediator.domain.models import Decision, Incident, PastAction
from remediator.domain.payload import Alert
from remediator.domain.repair import RepairRecord
from remediator.store.statuses import ACTION_STATE_OF, DECIDABLE, STATUS_OF, final_status
from remediator.store.views import from_ts, ts

GROUP, VERSION = "vigil.io", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
INCIDENTS, STATES = "vigilincidents", "vigilstates"
MAX_AUDIT = 50  # audit entries kept per object; the oldest beyond this are dropped and counted
MAX_TRACE = 100  # decision trace lines
MAX_STRING = 2000  # characters of any stored string value
MAX_LIST = 50  # items of any list inside an action's result
ACTION_SLOTS = 256  # actions per incident (ids: incident id * 256 + seq)


def name_of(fingerprint: str, starts_at: dt.datetime) -> str:
    """Deterministic from (fingerprint, startsAt): a create from any replica is the same object."""
    return "vi-" + hashlib.sha256(f"{fingerprint}|{ts(starts_at)}".encode()).hexdigest()[:32]


def id_of(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:10], 16)  # 40 bits: safe in JSON numbers


def split_action_id(action_id: int) -> tuple[int, int]:
    return action_id // ACTION_SLOTS, action_id % ACTION_SLOTS


def shrink(value: Any) -> Any:
    """Cap strings and lists (recursively) so one action's output cannot bloat the object."""
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else value[:MAX_STRING] + f"... ({len(value)} chars)"
    if isinstance(value, dict):
        return {str(k)[:256]: shrink(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [shrink(v) for v in value[:MAX_LIST]]
        return [*items, f"... {len(value) - MAX_LIST} more"] if len(value) > MAX_LIST else items
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return shrink(str(value))


def _target(labels: dict[str, str]) -> str:
    if labels.get("node"):
        return labels["node"]
    for key in ("pod", "service"):
        if labels.get(key):
            return f"{labels.get('namespace', '')}/{labels[key]}".lstrip("/")
    return ""


def new_object(alert: Alert, now: dt.datetime, namespace: str) -> dict:
    name = name_of(alert.fingerprint, alert.starts_at)
    firing = alert.status == "firing"
    t = ts(now)
    return {
        "apiVersion": API_VERSION, "kind": "VigilIncident",
        "metadata": {"name": name, "namespace": namespace, "labels": {"vigil.io/id": str(id_of(name))}},
        "spec": {"fingerprint": alert.fingerprint, "startsAt": ts(alert.starts_at),
                 "alertname": alert.labels.get("alertname", ""), "target": _target(alert.labels)[:253],
                 "labels": shrink(dict(alert.labels)), "annotations": shrink(dict(alert.annotations))},
        "status": {"id": id_of(name), "alertStatus": alert.status, "status": "pending" if firing else "resolved",
                   "reason": "" if firing else "resolved before Vigil saw it firing", "detail": "", "rule": None,
                   "notBefore": None, "trace": [], "notifications": 1, "verification": "", "afterResolve": "",
                   "receivedAt": t, "updatedAt": t, "resolvedAt": None if firing else t, "actions": [],
                   "audit": [], "auditDropped": 0},
    }


def add_audit(obj: dict, event: str, detail: dict, t: str, action_id: int | None = None) -> None:
    st = obj.setdefault("status", {})
    audit = st.setdefault("audit", [])
    audit.append({"at": t, "event": event, "action_id": action_id, "detail": shrink(detail)})
    if len(audit) > MAX_AUDIT:
        drop = len(audit) - MAX_AUDIT
        del audit[:drop]
        st["auditDropped"] = st.get("auditDropped", 0) + drop


def notify(obj: dict, alert: Alert, now: dt.datetime) -> tuple[bool, bool]:
    """A repeat notification of a known incident: (resolved now, pending work cancelled)."""
    st, t = obj["status"], ts(now)
    st["notifications"] = st.get("notifications", 1) + 1
    if alert.status == "firing" or st["alertStatus"] == "resolved":
        return False, False
    st.update(alertStatus="resolved", resolvedAt=t, updatedAt=t)
    n = 0
    for a in st["actions"]:
        if a["state"] == "planned":
            a.update(state="cancelled", finishedAt=t, result={"detail": "the alert resolved"})
            n += 1
    changed = any(a["state"] in ("running", "succeeded") for a in st["actions"])  # as SQLite: a running action
    if st["status"] in DECIDABLE or (st["status"] == "acting" and n and not changed):  # completes
        st.update(status="cancelled", reason="resolved", detail="the alert resolved before the action ran")
        add_audit(obj, "cancelled", {"reason": "the alert resolved before the action ran"}, t)
        return True, True
    return True, False


def _new_action(incident_id: int, seq: int, rule: str, type_: str, target: str, params: dict, state: str,
                t: str, workload: str = "", amount: float = 0.0) -> dict:
    if seq >= ACTION_SLOTS:
        raise ValueError(f"incident {incident_id}: more than {ACTION_SLOTS} actions")
    return {"id": incident_id * ACTION_SLOTS + seq, "seq": seq, "rule": rule, "type": type_, "target": target,
            "params": shrink(params), "state": state, "result": {}, "workload": workload, "amount": amount,
            "plannedAt": t, "startedAt": None, "finishedAt": None, "claim": None}


def decide(obj: dict, decision: Decision, now: dt.datetime, key: str = "") -> list[int] | None:
    """Store a decision; None if the incident is no longer to be decided (resolved or decided).
    With a key: the decision stored under the same key before (a retry whose first write applied)
    returns its action ids again, unless the chain has moved on since."""
    st, t = obj["status"], ts(now)
    if st["status"] not in DECIDABLE:
        if key and st.get("decisionKey") == key and st["status"] == "acting":
            return [a["id"] for a in st["actions"] if a.get("decisionKey") == key]
        return None
    again = decision.outcome == "wait" and st["status"] == "waiting" and st["reason"] == decision.reason
    status = STATUS_OF[decision.outcome]
    st.update(status=status, reason=decision.reason, detail=shrink(decision.detail),
              rule=decision.rule, notBefore=ts(decision.not_before) if decision.not_before else None,
              trace=[shrink(line) for line in decision.trace[:MAX_TRACE]], updatedAt=t,
              waitingSince=(st.get("waitingSince") or t) if status == "waiting" else None)
    state = ACTION_STATE_OF.get(decision.outcome)
    ids = []
    if state is not None:
        for p in decision.actions:
            a = _new_action(st["id"], len(st["actions"]), decision.rule or "", p.type, p.target, p.params, state,
                            t, p.workload, p.amount)
            if key:
                a["decisionKey"] = key
            st["actions"].append(a)
            ids.append(a["id"])
    if key:
        st["decisionKey"] = key
    if not again:  # a wait decided again for the same reason is not written to the audit every pass
        add_audit(obj, f"decision:{decision.outcome}", {"rule": decision.rule, "reason": decision.reason,
                                                         "detail": decision.detail}, t)
    return ids if decision.outcome == "act" else []


def requeue(obj: dict, decision: Decision, now: dt.datetime) -> bool | None:
    """A planned chain stopped at its admission by a rail that can clear: the rest is cancelled and
    the incident waits (as SQLiteLedger.requeue)."""
    st, t = obj["status"], ts(now)
    if st["status"] not in ("acting", "waiting"):
        return None
    for a in st["actions"]:
        if a["state"] == "planned":
            a.update(state="cancelled", finishedAt=t, result={"detail": shrink(f"waiting: {decision.detail}"),
                                                              "reason": decision.reason})
    st.update(status="waiting", reason=decision.reason, detail=shrink(decision.detail),
              notBefore=ts(decision.not_before or now), trace=[shrink(x) for x in decision.trace[:MAX_TRACE]],
              waitingSince=st.get("waitingSince") or t, updatedAt=t)
    add_audit(obj, "waiting", {"reason": decision.reason, "detail": decision.detail, "at": "admission"}, t)
    return True


def action(obj: dict, action_id: int) -> dict | None:
    return next((a for a in obj["status"]["actions"] if a["id"] == action_id), None)


def claim(obj: dict, action_id: int, now: dt.datetime, token: tuple[str, int] | None) -> dict | None:
    """planned -> running, or re-claim a running action after a crash. With a fencing token
    (holder identity, lease term), a running action claimed by another holder is taken over only by
    a later term, so two leaders of a split brain never both run it."""
    a = action(obj, action_id)
    if a is None or a["state"] not in ("planned", "running"):
        return None
    if a["state"] == "running" and token is not None and a.get("claim"):
        by, term = a["claim"]["by"], a["claim"]["term"]
        if by != token[0] and token[1] <= term:
            return None
    a.update(state="running", startedAt=a["startedAt"] or ts(now),
             claim={"by": token[0], "term": token[1]} if token else None)
    return a


def finish(obj: dict, action_id: int, state: str, result: dict, now: dt.datetime) -> None:
    st, t = obj["status"], ts(now)
    a = action(obj, action_id)
    if a is None:
        return
    a.update(state=state, result=shrink(result), finishedAt=t)
    if state != "succeeded":  # the rest of the chain does not run
        for other in st["actions"]:
            if other["state"] == "planned":
                other.update(state="cancelled", finishedAt=t, result={"detail": f"an earlier action {state}"})
    if any(x["state"] in ("planned", "running") for x in st["actions"]) or st["status"] != "acting":
        return
    states = {x["state"] for x in st["actions"]}
    final = final_status(states)
    if final == "succeeded" and "cancelled" in states:  # the alert resolved mid-chain: what ran is kept
        result = {"reason": "resolved_during_execution", "detail": "the alert resolved during execution; what ran "
                  "is kept (on_resolved follow-ups run), the rest was cancelled"}
    st.update(status=final, reason="" if final == "succeeded" and "cancelled" not in states else
              result.get("reason", final), detail=shrink(result.get("detail", "")), updatedAt=t)


def fail(obj: dict, stage: str, exc: BaseException, now: dt.datetime) -> None:
    st, t = obj["status"], ts(now)
    detail = f"{type(exc).__name__}: {exc}"[:1000]
    st.update(status="failed", reason="internal_error", detail=detail, updatedAt=t)
    for a in st["actions"]:
        if a["state"] in ("planned", "running"):
            a.update(state="failed" if a["state"] == "running" else "cancelled", finishedAt=t,
                     result={"detail": detail, "reason": "internal_error"})
    add_audit(obj, "internal_error", {"stage": stage, "exception": type(exc).__name__, "message": str(exc)[:1000]}, t)


def append(obj: dict, rule: str, type_: str, target: str, params: dict, now: dt.datetime, key: str = "") -> int:
    """A later step (escalation). With a key, appending again (a retry whose first write applied)
    returns the step appended under it, never a second one."""
    st, t = obj["status"], ts(now)
    done = next((a for a in st["actions"] if key and a.get("appendKey") == key), None)
    if done is not None:
        return done["id"]
    a = _new_action(st["id"], len(st["actions"]), rule, type_, target, params, "planned", t)
    if key:
        a["appendKey"] = key
    st["actions"].append(a)
    st.update(status="acting", updatedAt=t)
    add_audit(obj, "escalate", {"type": type_, "target": target}, t, a["id"])
    return a["id"]


# ---- reads --------------------------------------------------------------------------------------

def incident(obj: dict) -> Incident:
    spec, st = obj["spec"], obj["status"]
    return Incident(fingerprint=spec["fingerprint"], starts_at=from_ts(spec["startsAt"]), labels=spec["labels"],
                    annotations=spec["annotations"], alert_status=st["alertStatus"], id=st["id"],
                    received_at=from_ts(st.get("receivedAt")), waiting_since=from_ts(st.get("waitingSince")))


def past_actions(obj: dict, since: str) -> list[PastAction]:
    st = obj["status"]
    firing = st["alertStatus"] == "firing"
    admitted = any(a.get("startedAt") for a in st["actions"])
    return [PastAction(st["id"], a["rule"], a["type"], a["target"], from_ts(a["plannedAt"]), a["state"], firing,
                       a.get("workload", ""), a.get("amount", 0.0), admitted, from_ts(a.get("finishedAt")))
            for a in st["actions"]
            if a["plannedAt"] >= since or a["state"] in ("planned", "running")
            or (a["state"] in ("dry_run", "succeeded") and firing)]


def repairs(obj: dict, since: str, types: tuple[str, ...]) -> list[RepairRecord]:
    """The incident's repair attempts since `since`, with the GPU UUID of its alert."""
    spec, st = obj["spec"], obj["status"]
    return [RepairRecord(st["id"], a["type"], str(a.get("params", {}).get("node", "")),
                         str(a.get("params", {}).get("uuid") or spec["labels"].get("uuid", "")),
                         from_ts(a.get("startedAt") or a["plannedAt"]), a["state"])
            for a in st["actions"] if a["type"] in types and a["plannedAt"] >= since]


def summary(obj: dict) -> dict:
    spec, st = obj["spec"], obj["status"]
    return {"id": st["id"], "name": obj["metadata"]["name"], "fingerprint": spec["fingerprint"],
            "startsAt": spec["startsAt"], "alertname": spec["alertname"], "labels": spec["labels"],
            "alert_status": st["alertStatus"], "status": st["status"], "reason": st["reason"],
            "detail": st["detail"], "rule": st["rule"], "notifications": st["notifications"],
            "received_at": st["receivedAt"], "updated_at": st["updatedAt"], "resolved_at": st["resolvedAt"],
            "verification": st["verification"], "after_resolve": st["afterResolve"]}


def detail(obj: dict) -> dict:
    st = obj["status"]
    out = summary(obj)
    out.update(annotations=obj["spec"]["annotations"], not_before=st["notBefore"], trace=st["trace"],
               audit_dropped=st.get("auditDropped", 0), waiting_since=st.get("waitingSince"))
    out["actions"] = [{k: a[k] for k in ("id", "seq", "rule", "type", "target", "params", "state", "result")}
                      | {"planned_at": a["plannedAt"], "started_at": a["startedAt"], "finished_at": a["finishedAt"]}
                      for a in st["actions"]]
    out["audit"] = [dict(e) for e in st["audit"]]
    return out
