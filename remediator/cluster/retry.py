"""Retrying Kubernetes calls: transient errors (429 honouring Retry-After, 5xx, timeouts, resets)
are retried with capped exponential backoff and full jitter until the action's deadline; permanent
ones (400, 403, 404, 422, ...) are raised at once. What is retried is a whole idempotent step
(read, decide from the object's state, write), so after an uncertain outcome (a PATCH whose answer
was lost) the next attempt reads the object back and sees whether the write applied.

The deadline of the action running on this thread, and the process-wide stop signal, are held by
`Retrier`; a stop interrupts the backoff sleep and raises `Interrupted`, so an action stops at its
next safe point and stays resumable."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from remediator.cluster.bounded import Bounded

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT_STATUS = frozenset({0, 408, 409, 429, 500, 502, 503, 504})  # 0: no answer (reset, timeout)


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """4xx other than 408/409/429 will not change by retrying."""
        return self.status not in TRANSIENT_STATUS and 400 <= self.status < 500


class Refused(KubeError):
    """Vigil's own refusal (not ours to uncordon, a bare pod, no previous revision): never retried."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(status, message)

    @property
    def permanent(self) -> bool:
        return True


class Interrupted(Exception):
    """The process is stopping: the action stopped at a safe point and is left to resume."""


def timeouts(connect: float, read: float | None = None) -> tuple[float, float]:
    """The client's `_request_timeout`: (connect, read) seconds. It takes an int as a total but
    ignores a float, which means no timeout at all: never pass a bare number."""
    return (float(connect), float(connect if read is None else read))


def request(bounded: Bounded, fn: Callable[..., T], *args: Any, seconds: float, read: float | None = None,
            total: float | None = None, **kw: Any) -> T:
    """One Kubernetes API request: `seconds` to connect, `read` (default `seconds`) per socket read,
    and `total` (default twice the read timeout) in all, so that an answer trickling in a byte at a
    time is given up too (Overdue, an OSError: transient to `Retrier`)."""
    per_read = seconds if read is None else read
    return bounded.call(lambda: fn(*args, _request_timeout=timeouts(seconds, per_read), **kw),
                        2 * per_read if total is None else total)


def wrap(exc: ApiException) -> KubeError:
    return KubeError(exc.status or 0, f"{exc.status} {exc.reason}: {(exc.body or '')[:300]}")


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After") if exc.headers else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    request_timeout: float = 10.0  # seconds, each HTTP request (connect and read)
    deadline: float = 60.0  # seconds an action may spend retrying, unless its type has its own
    base: float = 0.2  # first backoff, doubled per attempt
    cap: float = 5.0  # longest backoff (a Retry-After may ask for longer, up to 60 s)


class Retrier:
    def __init__(self, policy: RetryPolicy, *, stopping: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.stopping = stopping or threading.Event()
        self._clock = clock
        self._rng = rng or random.Random()
        self._local = threading.local()
        self.attempts = 0  # every request attempt made through `run` (for tests and benchmarks)

    @contextlib.contextmanager
    def deadline(self, seconds: float | None) -> Iterator[None]:
        """The running action's deadline for every retried step on this thread."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = self._clock() + (self.policy.deadline if seconds is None else seconds)
        try:
            yield
        finally:
            self._local.deadline = previous

    def _deadline(self) -> float:
        d = getattr(self._local, "deadline", None)
        return d if d is not None else self._clock() + self.policy.deadline

    def sleep(self, seconds: float) -> None:
        """A pause inside an action: returns early, raising Interrupted, when the process stops."""
        if self.stopping.wait(max(seconds, 0.0)):
            raise Interrupted("stopping")

    def run(self, step: Callable[[], T], what: str) -> T:
        """Run `step` until it succeeds, fails permanently, or the deadline leaves no room to retry."""
        deadline = self._deadline()
        attempt = 0
        while True:
            if self.stopping.is_set():
                raise Interrupted("stopping")
            self.attempts += 1
            try:
                return step()
            except ApiException as exc:
                err, wait_at_least = wrap(exc), _retry_after(exc)
            except KubeError as exc:
                err, wait_at_least = exc, None
            except (Urllib3Error, OSError) as exc:  # reset, refused, timed out, protocol error
                err, wait_at_least = KubeError(0, f"{type(exc).__name__}: {exc}"), None
            if err.permanent:
                raise err
            delay = self._rng.uniform(0, min(self.policy.cap, self.policy.base * 2 ** attempt))
            delay = max(delay, wait_at_least or 0.0)
            if self._clock() + delay > deadline:
                raise KubeError(err.status, f"{what}: {err} (gave up after {attempt + 1} attempts at the "
                                            "action's deadline)")
            log.info("%s: transient error (%s), retrying in %.2f s", what, err, delay)
            self.sleep(delay)
            attempt += 1
