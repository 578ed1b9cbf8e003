"""/readyz's write probe: a ledger that can be read but not written (a full disk, a read-only
volume, an API server refusing writes) cannot make alerts durable, so intake is not ready. The
probe writes one small record at most once per `interval` and remembers the answer in between,
so readiness checks cost no more than one write per interval whatever the probe rate; a probe that
could not tell (the write lock busy) keeps the previous answer and tries again next time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Inconclusive(Exception):
    """The probe could not tell (the ledger busy with other writes): not a failure of the ledger."""


class WriteProbe:
    def __init__(self, write: Callable[[], None], *, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, interval, clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._error: BaseException | None = None

    def check(self) -> None:
        """Raises the last probe's error while the last conclusive probe failed."""
        if not self._lock.acquire(blocking=False):  # a probe is running: answer with the last one
            self._raise()
            return
        try:
            if self.clock() - self._at >= self.interval:
                self._probe()
        finally:
            self._lock.release()
        self._raise()

    def _probe(self) -> None:
        try:
            self.write()
        except Inconclusive:
            return
        except Exception as exc:  # the caller's check() raises it; the ledger's own error types
            self._error = exc
        else:
            self._error = None
        self._at = self.clock()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
