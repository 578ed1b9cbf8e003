"""/readyz's write probe: a ledger that can be read but not written (a full disk, a read-only
volume, an API server refusing writes) cannot make alerts durable, so intake is not ready. The
probe writes one small record at most once per `interval` and remembers the answer in between,
so readiness checks cost no more than one write per interval whatever the probe rate. A check
waits at most `bound` seconds for a probe it started (the probe goes on on its own thread and its
answer counts from the next check), so /readyz is never slower than that; a probe that could not
tell (the write lock busy) keeps the previous answer and tries again next time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Inconclusive(Exception):
    """The probe could not tell (the ledger busy with other writes): not a failure of the ledger."""


class WriteProbe:
    def __init__(self, write: Callable[[], None], *, interval: float = 5.0, bound: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.bound, self.clock = write, interval, bound, clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._error: BaseException | None = None
        self._done: threading.Event | None = None  # the running (or last) probe's

    def check(self) -> None:
        """Raises the last probe's error while the last conclusive probe failed."""
        with self._lock:
            if (self._done is None or self._done.is_set()) and self.clock() - self._at >= self.interval:
                self._done = threading.Event()
                threading.Thread(target=self._probe, args=(self._done,), name="vigil-write-probe",
                                 daemon=True).start()
            done = self._done
        if done is not None:
            done.wait(self.bound)
        error = self._error
        if error is not None:
            raise error

    def _probe(self, done: threading.Event) -> None:
        try:
            self.write()
            self._error, self._at = None, self.clock()
        except Inconclusive:
            pass  # the last answer stands; the next check probes again
        except Exception as exc:  # check() raises it: the ledger's own error types
            self._error, self._at = exc, self.clock()
        finally:
            done.set()
