"""Intake before decisions. While webhooks are being read and recorded, the engine holds off
between decisions, at most `max_wait` seconds each time, so that a storm's decisions never slow
the intake of the notifications still arriving (they would share the GIL and SQLite's write lock),
and a steady stream of webhooks can slow the engine but never stop it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class IntakeGate:
    def __init__(self, max_wait: float = 0.05) -> None:
        self.max_wait = max_wait
        self._in_flight = 0
        self.waiting = 0  # engines holding off now (for tests)
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Around one webhook request: the engine holds off while any is in flight."""
        with self._cond:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                if not self._in_flight:
                    self._cond.notify_all()

    def yield_to_intake(self) -> None:
        """Called by the engine between decisions: returns when no webhook is in flight, or after
        `max_wait` seconds."""
        with self._cond:
            if not self._in_flight:
                return
            self.waiting += 1
            try:
                self._cond.wait_for(lambda: not self._in_flight, timeout=self.max_wait)
            finally:
                self.waiting -= 1
