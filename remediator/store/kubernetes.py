"""The ledger in the Kubernetes API: one VigilIncident object per (fingerprint, startsAt) and one
VigilState object (pause, breaker, the audit trail of neither), for several replicas.

- Idempotency comes from the API: the object's name is derived from (fingerprint, startsAt), so a
  create from any replica either wins or gets 409 AlreadyExists and counts as a duplicate.
- Every transition (decide, claim, finish, resolve) is a read, a pure change (incident_object.py)
  and a replace carrying the resourceVersion read; a 409 Conflict means another writer won, so the
  transition is re-read and re-applied (and refused where it no longer holds: a resolved incident
  is not decided, a cancelled or claimed action not claimed).
- Intake is durable when the create/replace returns (etcd has committed it): any replica can
  answer Alertmanager 2xx. The engine reads a cache kept by a watch; the leader re-lists at the
  start of each term (incomplete_actions), so its budget sees every plan of the previous leader.

This module does not import `kubernetes`: it talks to an injected `ObjectAPI`
(remediator.cluster.incidents_api implements it with the official client). Expected outcomes are
return values (None: exists, conflict, not found); a backend that cannot be reached raises
ConnectionError, which the ledger turns into LedgerUnavailable (intake answers 503).

Transient faults (429, 5xx, resets, timeouts) never reach the caller as a first answer: every call
is retried with capped, jittered backoff until a deadline (RETRY_DEADLINE; intake's shorter, so
Alertmanager gets its 503 and resends in time); a refusal (ConnectionRefusedError: 401, 403, 422...)
is raised at once. A retried write may have applied with its answer lost: the retry then gets 409,
re-reads and re-applies the change, and the changes are idempotent for that (a decision or an
appended step carries a key, a claim by the same holder is the same claim), so nothing is doubled.
A first LIST that fails does not stop the process: the watch thread retries it, and until it has
succeeded `ping` fails (/readyz 503) and nothing is due (an empty cache would mean a blind budget).
"""

from __future__ import annotations

import contextvars
import copy
import datetime as dt
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from remediator.domain.models import Decision, Incident, PastAction
from remediator.domain.payload import Alert
from remediator.domain.queue import severity_rank
from remediator.domain.repair import REPAIR_ACTIONS, RepairRecord
from remediator.store import incident_object as io
from remediator.store.ledger import DUE_BATCH, ActionRow, LedgerUnavailable, Recorded
from remediator.store.probe import WriteProbe
from remediator.store.state_cache import StateCache
from remediator.store.views import from_ts, ts

log = logging.getLogger(__name__)
STATE_NAME = "vigil"
MAX_ATTEMPTS = 10
RETRY_DEADLINE = 30.0  # seconds a ledger call retries transient API errors (an engine step's)
INTAKE_DEADLINE = 5.0  # the same for intake: Alertmanager gets a 503 and resends, in time
PROBE_DEADLINE = 2.0  # /readyz's read of the API: its answer must come in bounded time
BACKOFF = (0.1, 2.0)  # first and largest sleep between attempts (full jitter)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("ledger_deadline", default=None)
WRITE_PROBE_INTERVAL = 30.0  # /readyz writes the state object at most this often, and not after other writes
_NO_CHANGE = object()


class ObjectAPI(Protocol):
    namespace: str

    def create(self, plural: str, body: dict) -> dict | None: ...  # None: AlreadyExists
    def replace(self, plural: str, body: dict) -> dict | None: ...  # None: Conflict or gone
    def get(self, plural: str, name: str) -> dict | None: ...  # None: NotFound
    def list(self, plural: str) -> tuple[list[dict], str]: ...  # items, resourceVersion
    def delete(self, plural: str, name: str) -> bool: ...
    def watch(self, plural: str, resource_version: str, timeout: int) -> Iterator[tuple[str, dict]]: ...


def _rv(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class KubernetesLedger:
    uid = ""  # incident ids are hashes of (fingerprint, startsAt): the same in every ledger, never reused

    def __init__(self, api: ObjectAPI, *, retention: float = 7 * 86400.0, watch: bool = True,
                 token: Callable[[], tuple[str, int] | None] = lambda: None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 retry_deadline: float = RETRY_DEADLINE, intake_deadline: float = INTAKE_DEADLINE) -> None:
        self.api, self.retention, self._token, self._clock = api, retention, token, clock
        self.retry_deadline, self.intake_deadline = retry_deadline, intake_deadline
        self.retries = 0  # transient API errors retried (a metric's worth; tests read it)
        self._salt = f"{random.getrandbits(64):016x}"  # in decision keys: this process's own
        self._synced = threading.Event()  # the first LIST succeeded
        self._fenced = False
        self._wake: Callable[[], None] = lambda: None
        self._intake_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vigil-intake")
        self._lock = threading.Lock()
        self._objs: dict[str, dict] = {}
        self._by_id: dict[int, str] = {}
        self._stop = threading.Event()
        self._changes, self._miss_listed_at = 0, -1  # cache changes; their count at the last LIST for a miss
        self._last_ok = time.monotonic()
        self._last_write_ok = float("-inf")
        self._write_probe = WriteProbe(self._probe_write, interval=WRITE_PROBE_INTERVAL)
        self._list_rv: str | None = None
        token = _DEADLINE.set(self.intake_deadline)  # start-up does not wait long: the watch thread goes on
        try:
            self._list_rv = self.resync()
        except LedgerUnavailable as exc:
            if not watch:  # a one-off reader (explain): the caller says so
                raise
            log.warning("ledger: the first LIST failed (%s); retrying in the background, not ready until then", exc)
        finally:
            _DEADLINE.reset(token)
        self._thread = threading.Thread(target=self._watch_loop, name="vigil-ledger-watch", daemon=True)
        self._state = StateCache(api, io.STATES, STATE_NAME, call=self._call, stop=self._stop)
        if watch:
            self._thread.start()
            self._state.start()

    def set_listener(self, wake: Callable[[], None]) -> None:
        """Called when the watch brings an incident with work to do (created or resolved elsewhere):
        the leader's engine wakes at once instead of at its next tick."""
        self._wake = wake

    def set_token(self, token: Callable[[], tuple[str, int] | None]) -> None:
        """The fencing token (lease holder, term) claims carry: wired to the leader elector. From then
        on a replica without a token (not the leader) claims nothing."""
        self._token, self._fenced = token, True

    def close(self) -> None:
        self._stop.set()
        self._intake_pool.shutdown(wait=False)

    # ---- the cache ---------------------------------------------------------------------------

    def _call(self, fn: Callable, *args: Any) -> Any:
        """One API call, retried on transient errors until the deadline; a refusal is raised at once."""
        deadline = time.monotonic() + (_DEADLINE.get() or self.retry_deadline)
        delay = BACKOFF[0]
        while True:
            try:
                out = fn(*args)
                break
            except ConnectionRefusedError as exc:  # the API answered and refused: retrying will not help
                raise LedgerUnavailable(f"the Kubernetes API refused: {exc}") from exc
            except ConnectionError as exc:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    raise LedgerUnavailable(f"the Kubernetes API did not answer: {exc}") from exc
                self.retries += 1
                self._stop.wait(min(random.uniform(0, delay), left))
                delay = min(2 * delay, BACKOFF[1])
        self._last_ok = time.monotonic()
        if fn in (self.api.create, self.api.replace):
            self._last_write_ok = self._last_ok
        return out

    def _put(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            old = self._objs.get(name)
            if old is None or _rv(obj) >= _rv(old):
                self._objs[name] = obj
                self._by_id[obj["status"]["id"]] = name
                self._changes += 1

    def _drop(self, name: str) -> None:
        with self._lock:
            old = self._objs.pop(name, None)
            if old is not None:
                self._by_id.pop(old["status"]["id"], None)
                self._changes += 1

    def resync(self) -> str:
        """A consistent LIST from the API replaces the cache (the leader does this each term)."""
        items, rv = self._call(self.api.list, io.INCIDENTS)
        with self._lock:
            self._objs = {o["metadata"]["name"]: o for o in items}
            self._by_id = {o["status"]["id"]: o["metadata"]["name"] for o in items}
        self._synced.set()
        return rv

    def _snapshot(self) -> list[dict]:
        with self._lock:
            return list(self._objs.values())

    def _watch_loop(self) -> None:
        rv, swept = self._list_rv, 0.0
        while rv is None and not self._stop.is_set():  # the first LIST failed at start: until it works
            try:
                rv = self.resync()
            except LedgerUnavailable as exc:
                log.warning("ledger list failed: %s", exc)
                self._stop.wait(1.0)
        while not self._stop.is_set():
            try:
                for kind, obj in self.api.watch(io.INCIDENTS, rv, 60):
                    if kind == "ERROR":  # 410 Gone: the resourceVersion is too old; list again
                        raise ConnectionError("watch expired")
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if kind == "DELETED":
                        self._drop(obj["metadata"]["name"])
                    elif kind != "BOOKMARK":
                        self._put(obj)
                        if obj.get("status", {}).get("status") == "pending" or \
                                obj.get("status", {}).get("alertStatus") == "resolved":
                            self._wake()
                    if self._stop.is_set():
                        return
                self._last_ok = time.monotonic()
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("ledger watch: %s; listing again", exc)
                self._stop.wait(1.0)
                try:
                    rv = self.resync()
                except Exception as exc2:
                    log.warning("ledger list failed: %s", exc2)
                    continue
            if time.monotonic() - swept > 60:
                swept = time.monotonic()
                self.sweep(self._clock())

    def sweep(self, now: dt.datetime) -> int:
        """Retention: delete resolved incidents whose alert resolved longer than `retention` ago
        and whose work is finished."""
        cutoff, n = ts(now - dt.timedelta(seconds=self.retention)), 0
        for obj in self._snapshot():
            st = obj["status"]
            if st["alertStatus"] == "resolved" and st["resolvedAt"] and st["resolvedAt"] < cutoff and \
                    not any(a["state"] in ("planned", "running") for a in st["actions"]):
                try:
                    if self.api.delete(io.INCIDENTS, obj["metadata"]["name"]):
                        n += 1
                except ConnectionError as exc:
                    log.warning("retention: %s", exc)
                    break
                self._drop(obj["metadata"]["name"])
        return n

    # ---- compare-and-swap ----------------------------------------------------------------------

    def _fresh(self, name: str) -> dict | None:
        obj = self._call(self.api.get, io.INCIDENTS, name)
        if obj is None:
            self._drop(name)
        else:
            self._put(obj)
        return obj

    def _update(self, name: str, change: Callable[[dict], Any], plural: str = io.INCIDENTS) -> Any:
        """Apply `change` to a copy and replace with the read resourceVersion; on 409 read again and
        re-apply. `change` returns the caller's result, or _NO_CHANGE to write nothing."""
        with self._lock:
            obj = self._objs.get(name) if plural == io.INCIDENTS else None
        for _ in range(MAX_ATTEMPTS):
            if obj is None:
                obj = self._fresh(name) if plural == io.INCIDENTS else self._call(self.api.get, plural, name)
                if obj is None:
                    return None
            new = copy.deepcopy(obj)
            result = change(new)
            if result is _NO_CHANGE:
                return None
            written = self._call(self.api.replace, plural, new)
            if written is not None:
                if plural == io.INCIDENTS:
                    self._put(written)
                elif name == STATE_NAME:
                    self._state.put(written)
                return result
            obj = None  # someone else wrote first: read again, decide again
        raise LedgerUnavailable(f"{name}: still conflicting after {MAX_ATTEMPTS} attempts")

    def _name(self, incident_id: int) -> str | None:
        with self._lock:
            name = self._by_id.get(incident_id)
        if name is None:  # a cache behind the API (a follower, just after a create elsewhere)
            with self._lock:  # but not once per unknown id: only if the cache moved since the last such LIST
                if self._changes == self._miss_listed_at:
                    return None
                self._miss_listed_at = self._changes
            self.resync()
            with self._lock:
                name = self._by_id.get(incident_id)
        return name

    def _update_id(self, incident_id: int, change: Callable[[dict], Any]) -> Any:
        name = self._name(incident_id)
        return None if name is None else self._update(name, change)

    # ---- intake --------------------------------------------------------------------------------

    def record(self, alerts: Iterable[Alert], now: dt.datetime) -> Recorded:
        """Durable when it returns: every alert is a committed create or replace in the API. The
        incidents of one body are written in parallel (one object each); a name's alerts in order."""
        groups: dict[str, list[Alert]] = {}
        for a in alerts:
            groups.setdefault(io.name_of(a.fingerprint, a.starts_at), []).append(a)
        if len(groups) <= 1:
            parts = [self._record_one(name, group, now) for name, group in groups.items()]
        else:
            parts = list(self._intake_pool.map(lambda item: self._record_one(item[0], item[1], now), groups.items()))
        return Recorded(*(sum(p[i] for p in parts) for i in range(4)))

    def _record_one(self, name: str, alerts: list[Alert], now: dt.datetime) -> tuple[int, int, int, int]:
        """(new, duplicates, resolved, cancelled) for the alerts of one incident. As SQLite: a new
        alert twice in one body is one incident, recorded once. Retried within intake's deadline."""
        token = _DEADLINE.set(self.intake_deadline)
        try:
            return self._record_alerts(name, alerts, now)
        finally:
            _DEADLINE.reset(token)

    def _record_alerts(self, name: str, alerts: list[Alert], now: dt.datetime) -> tuple[int, int, int, int]:
        first = alerts[0]
        with self._lock:
            known = name in self._objs
        if not known:
            created = self._call(self.api.create, io.INCIDENTS, io.new_object(first, now, self.api.namespace))
            if created is not None:
                self._put(created)
                return int(first.status == "firing"), 0, int(first.status != "firing"), 0
        dupes = resolved = cancelled = 0
        for a in alerts:
            dupes += 1
            out = self._update(name, lambda obj, a=a: io.notify(obj, a, now))
            if out:
                resolved += out[0]
                cancelled += out[1]
        return 0, dupes, resolved, cancelled

    # ---- the engine's side ---------------------------------------------------------------------

    def due(self, now: dt.datetime, limit: int = DUE_BATCH,
            on_unreadable: Callable[[int, Exception], None] | None = None,
            wake_waiting: bool = False) -> list[Incident]:
        """As SQLiteLedger.due: waiting ones whose time came (all with `wake_waiting`), the head of the
        queue first, then new ones, then deferred ones; an object that cannot be read goes to
        `on_unreadable` (default: marked failed), so it never blocks the ones after it."""
        if not self._synced.is_set():
            return []  # deciding from a cache that missed the API's state would budget blind
        t = ts(now)
        objs = [o for o in self._snapshot() if _is_due(o["status"], t, wake_waiting)]
        objs.sort(key=_due_order(t))
        out = []
        for o in objs[:limit]:
            try:
                out.append(io.incident(o))
            except Exception as exc:
                (on_unreadable or (lambda i, e: self.fail_incident(i, "read", e, now)))(o["status"]["id"], exc)
        return out

    def fail_incident(self, incident_id: int, stage: str, exc: BaseException, now: dt.datetime) -> None:
        """Processing this incident raised: the exception on it and in its audit; out of the queue."""
        self._update_id(incident_id, lambda obj: io.fail(obj, stage, exc, now))

    def next_wake(self) -> dt.datetime | None:
        times = [o["status"]["notBefore"] for o in self._snapshot()
                 if o["status"]["status"] in ("deferred", "waiting") and o["status"]["notBefore"]]
        return from_ts(min(times)) if times else None

    def waiting(self) -> list[dict]:
        return [io.summary(o) | {"waiting_since": o["status"].get("waitingSince"),
                                 "not_before": o["status"]["notBefore"]}
                for o in self._snapshot() if o["status"]["status"] == "waiting"]

    def firing(self) -> list[Incident]:
        return [io.incident(o) for o in self._snapshot() if o["status"]["alertStatus"] == "firing"]

    def requeue(self, incident_id: int, decision: Decision, now: dt.datetime) -> None:
        self._update_id(incident_id, lambda obj: _or_no_change(io.requeue(obj, decision, now)))

    def save_decision(self, incident_id: int, decision: Decision, now: dt.datetime) -> list[int]:
        """The decision's action ids. Idempotent: storing the same decision again (a retry after a
        lost answer, or the engine's one-by-one retry of a batch) returns the ids stored the first time,
        so a stored decision always gets its chain started."""
        key = _decision_key(self._salt, incident_id, decision, now)
        out = self._update_id(incident_id, lambda obj: _or_no_change(io.decide(obj, decision, now, key=key)))
        return out or []

    def save_decisions(self, decided: list[tuple[int, Decision]], now: dt.datetime) -> dict[int, list[int]]:
        """One write per incident (each its own object), in parallel. A write that failed raises
        after the others finished; the engine's retry one by one then finds those stored (same key)."""
        ids = list(self._intake_pool.map(lambda d: self.save_decision(d[0], d[1], now), decided))
        return {incident_id: out for (incident_id, _), out in zip(decided, ids, strict=True)}

    def claim_action(self, action_id: int, now: dt.datetime) -> ActionRow | None:
        incident_id, _ = io.split_action_id(action_id)
        token = self._token()
        if token is None and self._fenced:
            return None
        a = self._update_id(incident_id, lambda obj: _or_no_change(io.claim(obj, action_id, now, token)))
        if a is None:
            return None
        return ActionRow(a["id"], incident_id, a["seq"], a["rule"], a["type"], a["target"], a["params"], "running")

    def finish_action(self, action_id: int, state: str, result: dict, now: dt.datetime) -> None:
        incident_id, _ = io.split_action_id(action_id)
        self._update_id(incident_id, lambda obj: io.finish(obj, action_id, state, result, now))

    def incomplete_actions(self) -> dict[int, list[int]]:
        self.resync()  # a new term starts from the API's state, not from a cache
        chains: dict[int, list[int]] = {}
        for o in self._snapshot():
            ids = [a["id"] for a in o["status"]["actions"] if a["state"] in ("planned", "running")]
            if ids:
                chains[o["status"]["id"]] = ids
        return chains

    def history(self, since: dt.datetime) -> list[PastAction]:
        t = ts(since)
        return [p for o in self._snapshot() for p in io.past_actions(o, t)]

    def repairs(self, since: dt.datetime) -> list[RepairRecord]:
        t = ts(since)
        return [r for o in self._snapshot() for r in io.repairs(o, t, REPAIR_ACTIONS)]

    def append_action(self, incident_id: int, rule: str, type_: str, target: str, params: dict,
                      now: dt.datetime) -> int:
        """Idempotent per call: a retried append whose first write applied finds its step there."""
        key = f"{time.time_ns():x}-{random.getrandbits(32):08x}"
        return self._update_id(incident_id, lambda obj: io.append(obj, rule, type_, target, params, now, key=key))

    def set_verification(self, incident_id: int, result: str, detail: str, now: dt.datetime) -> None:
        def change(obj: dict) -> None:
            obj["status"].update(verification=result, updatedAt=ts(now))
            io.add_audit(obj, f"verify:{result}", {"detail": detail}, ts(now))
        self._update_id(incident_id, change)

    def resolved_followups(self) -> list[dict]:
        return [io.detail(o) for o in self._snapshot()
                if o["status"]["alertStatus"] == "resolved" and not o["status"]["afterResolve"]
                and o["status"]["status"] in ("succeeded", "failed", "blocked") and o["status"]["rule"]]

    def mark_after_resolve(self, incident_id: int, outcome: str, now: dt.datetime) -> None:
        def change(obj: dict) -> None:
            obj["status"].update(afterResolve=outcome, updatedAt=ts(now))
            io.add_audit(obj, "after_resolve", {"outcome": outcome}, ts(now))
        self._update_id(incident_id, change)

    # ---- safety state and the audit trail -----------------------------------------------------

    def _state_object(self) -> dict:
        obj = self._call(self.api.get, io.STATES, STATE_NAME)
        if obj is not None:
            return obj
        body = {"apiVersion": io.API_VERSION, "kind": "VigilState",
                "metadata": {"name": STATE_NAME, "namespace": self.api.namespace},
                "spec": {"state": {}}, "status": {"audit": [], "auditDropped": 0}}
        return self._call(self.api.create, io.STATES, body) or self._call(self.api.get, io.STATES, STATE_NAME)

    def get_state(self, key: str) -> str | None:
        """From the state watch's cache once it has listed (the runner asks before every action),
        else from the API."""
        known, obj = self._state.get()
        if known:
            return ((obj or {}).get("spec") or {}).get("state", {}).get(key)
        return (self._state_object().get("spec") or {}).get("state", {}).get(key)

    def set_state(self, key: str, value: str | None) -> None:
        self._state_object()

        def change(obj: dict) -> Any:
            state = obj.setdefault("spec", {}).setdefault("state", {})
            if state.get(key) == value:
                return _NO_CHANGE
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
            return True
        self._update(STATE_NAME, change, io.STATES)

    def audit(self, event: str, detail: dict, now: dt.datetime, *, incident_id: int | None = None,
              action_id: int | None = None) -> None:
        if incident_id is not None:
            self._update_id(incident_id, lambda obj: io.add_audit(obj, event, detail, ts(now), action_id))
            return
        self._state_object()
        self._update(STATE_NAME, lambda obj: io.add_audit(obj, event, detail, ts(now), action_id), io.STATES)

    # ---- queries -----------------------------------------------------------------------------

    def list_incidents(self, *, status: str | None, alertname: str | None, limit: int,
                       offset: int) -> tuple[list[dict], int]:
        objs = [o for o in self._snapshot() if (not status or o["status"]["status"] == status)
                and (not alertname or o["spec"]["alertname"] == alertname)]
        objs.sort(key=lambda o: (o["status"]["receivedAt"], o["metadata"]["name"]), reverse=True)
        return [io.summary(o) for o in objs[offset:offset + limit]], len(objs)

    def get_incident(self, incident_id: int) -> dict | None:
        with self._lock:
            name = self._by_id.get(incident_id)
            obj = self._objs.get(name) if name else None
        if obj is None:
            name = self._name(incident_id)
            obj = self._fresh(name) if name else None
        return io.detail(obj) if obj else None

    def counts_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self._snapshot():
            counts[o["status"]["status"]] = counts.get(o["status"]["status"], 0) + 1
        return counts

    def ping(self) -> None:
        """Intake readiness: the API answered within the last 30 s, or answers now; and it took a
        write within the last WRITE_PROBE_INTERVAL, or takes the write probe's (rate-limited)."""
        if not self._synced.is_set():
            raise LedgerUnavailable("the ledger has not listed its incidents yet (retrying)")
        if time.monotonic() - self._last_ok >= 30:
            token = _DEADLINE.set(PROBE_DEADLINE)  # /readyz answers in bounded time
            try:
                self._call(self.api.get, io.STATES, STATE_NAME)
            finally:
                _DEADLINE.reset(token)
        self._write_probe.check()

    def _probe_write(self) -> None:
        if time.monotonic() - self._last_write_ok < WRITE_PROBE_INTERVAL:
            return  # intake or the engine wrote since: that was the probe
        token = _DEADLINE.set(self.intake_deadline)
        try:
            self.set_state("readyz_write_probe", ts(self._clock()))
        finally:
            _DEADLINE.reset(token)


def _decision_key(salt: str, incident_id: int, decision: Decision, now: dt.datetime) -> str:
    """The same decision stored twice by this process has the same key: the incident, when, and
    what. The salt is the process's: another replica's decision is never taken for ours."""
    what = "|".join(f"{a.type}:{a.target}" for a in decision.actions)
    text = f"{salt}|{incident_id}|{ts(now)}|{decision.outcome}|{decision.rule}|{what}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_due(st: dict, t: str, wake_waiting: bool) -> bool:
    if st["status"] == "pending":
        return True
    if st["status"] == "waiting":
        return wake_waiting or (st["notBefore"] or "") <= t
    return st["status"] == "deferred" and (st["notBefore"] or "") <= t


def _due_order(t: str) -> Callable[[dict], tuple]:
    """As SQLiteLedger.due: new ones first, then waiting ones whose time came (the longest unchecked
    first), then the head of the queue (on a wake), then deferred ones."""
    def key(o: dict) -> tuple:
        st, spec = o["status"], o["spec"]
        if st["status"] == "pending":
            return 0, 0, st["receivedAt"], o["metadata"]["name"]
        if st["status"] == "waiting" and (st["notBefore"] or "") <= t:
            return 1, 0, st["notBefore"] or "", o["metadata"]["name"]
        if st["status"] == "waiting":
            return 2, severity_rank(spec["labels"]), spec["startsAt"], o["metadata"]["name"]
        return 3, 0, st["notBefore"] or "", o["metadata"]["name"]
    return key


def _or_no_change(value: Any) -> Any:
    return _NO_CHANGE if value is None else value
