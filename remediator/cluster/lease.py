"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's tryAcquireOrRenew does it.

The pinned client (34.x, matching the 1.34 control plane) ships only a ConfigMap lock, and its
run loop does not stop the work it started when leadership is lost. This elector is small:

- acquire or renew = GET, then a compare-and-swap PUT carrying the resourceVersion just read
  (a 409 means another candidate wrote first); a missing Lease is CREATEd (409: someone won);
- a lease held by another is expired only `lease_duration` after *this* process first observed
  its current record (local monotonic time, so no clock skew between replicas matters);
- leadership is valid until `renew_deadline` after the start of the last successful renewal.
  `is_leader()` checks that deadline itself, so a stuck loop thread cannot keep a replica acting;
  since renew_deadline < lease_duration, a replica stops acting before the others can take over;
- `release()` on a graceful stop writes an empty holderIdentity, so a follower takes over in
  about retry_period instead of lease_duration.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from remediator.cluster.bounded import Bounded
from remediator.cluster.retry import request
from remediator.config import LeaderElection

log = logging.getLogger(__name__)


class Leadership(Protocol):
    """What the engine and the API ask: may this replica act now, and who holds the lease."""

    identity: str

    def is_leader(self) -> bool: ...
    def fence(self) -> None: ...  # raises NotLeader
    def holder(self) -> str: ...


class NotLeader(Exception):
    """Raised by fence(): this replica cannot prove it holds the lease, so it must not act."""


@dataclass(frozen=True)
class _Record:
    holder: str
    duration: int
    acquired: dt.datetime | None
    renewed: dt.datetime | None
    transitions: int


def _record(lease: client.V1Lease) -> _Record:
    s = lease.spec or client.V1LeaseSpec()
    return _Record(s.holder_identity or "", s.lease_duration_seconds or 0, s.acquire_time, s.renew_time,
                   s.lease_transitions or 0)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseElector:
    def __init__(self, api_client: object, settings: LeaderElection, identity: str, *,
                 on_change: Callable[[bool], None] = lambda leading: None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], dt.datetime] = _utcnow) -> None:
        self.coord = client.CoordinationV1Api(api_client)
        self.settings, self.identity = settings, identity
        self._bounded = Bounded(4, "the Kubernetes API (lease)")
        self._on_change, self._clock, self._wall = on_change, clock, wall
        self._lock = threading.Lock()
        self._leading = False
        self._valid_until = 0.0
        self._observed: _Record | None = None
        self._observed_at = 0.0
        self._term = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transitions_seen = 0  # times this replica became leader

    # ---- what the engine asks ---------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading and self._clock() < self._valid_until

    def fence(self) -> None:
        if not self.is_leader():
            raise NotLeader(f"{self.identity} does not hold lease {self.settings.namespace}/{self.settings.name}")

    def holder(self) -> str:
        """The holder as last observed ('' if none or unknown)."""
        with self._lock:
            return self._observed.holder if self._observed else ""

    def token(self) -> tuple[str, int] | None:
        """A fencing token for the ledger's claims: (identity, the lease's transitions when this
        replica acquired it). Each acquisition by a new holder increments the term."""
        with self._lock:
            return (self.identity, self._term) if self._leading else None

    # ---- one round ---------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> str:
        """One round: 'held' (this replica holds the lease now), 'other' (another holder's lease has
        not expired, or another candidate wrote first) or 'error' (the API did not answer)."""
        s = self.settings
        now = self._wall()
        try:
            lease = self._api(self.coord.read_namespaced_lease, s.name, s.namespace, seconds=s.renew_deadline / 2)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("lease %s/%s: read failed: %s %s", s.namespace, s.name, exc.status, exc.reason)
                return "error"
            return self._create(now)
        except Exception as exc:  # connection refused, timeout
            log.warning("lease %s/%s: read failed: %s", s.namespace, s.name, type(exc).__name__)
            return "error"
        rec = _record(lease)
        with self._lock:
            if rec != self._observed:
                self._observed, self._observed_at = rec, self._clock()
            expired = self._clock() >= self._observed_at + rec.duration
        if rec.holder and rec.holder != self.identity and not expired:
            return "other"
        mine = rec.holder == self.identity
        lease.spec.holder_identity = self.identity
        lease.spec.lease_duration_seconds = math.ceil(s.lease_duration)
        lease.spec.renew_time = now
        if not mine:
            lease.spec.acquire_time = now
            lease.spec.lease_transitions = rec.transitions + 1
        # carries metadata.resourceVersion from the read: never a blind write
        return self._write("update", lambda: self._api(self.coord.replace_namespaced_lease, s.name, s.namespace, lease,
                                                       seconds=s.renew_deadline / 2))

    def _create(self, now: dt.datetime) -> str:
        s = self.settings
        body = client.V1Lease(metadata=client.V1ObjectMeta(name=s.name, namespace=s.namespace),
                              spec=client.V1LeaseSpec(holder_identity=self.identity, acquire_time=now, renew_time=now,
                                                      lease_duration_seconds=math.ceil(s.lease_duration),
                                                      lease_transitions=0))
        return self._write("create", lambda: self._api(self.coord.create_namespaced_lease, s.namespace, body,
                                                       seconds=s.renew_deadline / 2))

    def _api(self, fn: Callable[..., Any], *args: Any, seconds: float) -> Any:
        """One request: `seconds` to connect and per read, and twice that in all (a round's request
        gets half the renew deadline, as client-go's round gets the whole; a trickling answer is given
        up, as an error: the next round reads the lease and sees what landed)."""
        return request(self._bounded, fn, *args, seconds=seconds)

    def _write(self, what: str, call: Callable[[], Any]) -> str:
        """One create or compare-and-swap update: "held" when it landed, "other" on 409 (another
        candidate wrote first), "error" otherwise; a landed write becomes the observed record."""
        s = self.settings
        try:
            written = call()
        except ApiException as exc:
            if exc.status == 409:
                return "other"
            log.warning("lease %s/%s: %s failed: %s %s", s.namespace, s.name, what, exc.status, exc.reason)
            return "error"
        except Exception as exc:
            log.warning("lease %s/%s: %s failed: %s", s.namespace, s.name, what, type(exc).__name__)
            return "error"
        with self._lock:
            self._observed, self._observed_at = _record(written), self._clock()
            self._term = self._observed.transitions
        return "held"

    # ---- the loop ------------------------------------------------------------------------------

    def step(self) -> bool:
        """One round and its effect on leadership; returns whether this replica leads now."""
        started = self._clock()
        result = self.try_acquire_or_renew()
        with self._lock:
            was = self._leading
            if result == "held":
                self._leading, self._valid_until = True, started + self.settings.renew_deadline
            elif result == "other" or self._clock() >= self._valid_until:
                self._leading = False
            now_leading = self._leading
        if now_leading != was:
            self._changed(now_leading, result)
        return now_leading

    def _changed(self, leading: bool, result: str) -> None:
        s = self.settings
        if leading:
            self.transitions_seen += 1
            log.warning("became leader: %s holds lease %s/%s", self.identity, s.namespace, s.name)
        else:
            log.warning("lost leadership of lease %s/%s (%s): stopped acting", s.namespace, s.name,
                        "another holder" if result == "other" else f"no renewal within {s.renew_deadline:g}s")
        self._on_change(leading)

    def _run(self) -> None:
        while not self._stop.is_set():
            leading = self.step()
            period = self.settings.retry_period
            if not leading:  # followers jitter, as client-go's JitterUntil(retryPeriod, 1.2)
                period *= 1 + random.random() * 0.2
            self._stop.wait(period)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-lease", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop campaigning; with release, hand the lease back (empty holderIdentity) if held."""
        self._stop.set()
        with self._lock:
            held, self._leading = self._leading, False
        if held:
            self._on_change(False)
        if self._thread is not None:
            self._thread.join(self.settings.retry_period + 5)
        if release and held:
            self.release()

    def release(self) -> bool:
        s = self.settings
        try:
            lease = self._api(self.coord.read_namespaced_lease, s.name, s.namespace, seconds=5)
            if (lease.spec.holder_identity or "") != self.identity:
                return False
            now = self._wall()
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = now
            lease.spec.acquire_time = now
            self._api(self.coord.replace_namespaced_lease, s.name, s.namespace, lease, seconds=5)
        except Exception as exc:  # the lease then expires on its own
            log.warning("could not release lease %s/%s: %s", s.namespace, s.name, exc)
            return False
        log.info("released lease %s/%s", s.namespace, s.name)
        return True


class AlwaysLeader:
    """For a replica that acts on no cluster (dry-run without Kubernetes): nothing to elect."""

    identity = "local"

    def is_leader(self) -> bool:
        return True

    def fence(self) -> None:
        return None

    def holder(self) -> str:
        return self.identity
