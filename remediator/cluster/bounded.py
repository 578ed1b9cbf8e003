"""Calls to an HTTP dependency (Prometheus, Alertmanager, the Kubernetes API) given up at a total
deadline.

requests' and urllib3's timeouts are per socket operation: a server, or a proxy, that sends a byte
now and then never times out, and the thread waiting on it waits for ever. Each call here runs on
a daemon thread of its own (a hung call never holds up the process's exit) and is given up
`timeout` seconds after it started. A given-up call keeps its thread until the server lets go;
while `slots` calls are held that way, further calls fail at once, so the threads never pile up.
Calls that answer in time hold no slot, however many run at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

import requests

T = TypeVar("T")


class Overdue(requests.Timeout):
    """No complete answer within the deadline, or every slot is held by an earlier such call."""


class Bounded:
    def __init__(self, slots: int, name: str) -> None:
        self.limit, self.name = slots, name
        self._lock = threading.Lock()
        self.held = 0  # given-up calls whose threads still wait on the server

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """`fn()`, or Overdue after `timeout` s. Calls in time take no slot, however many run at once."""
        with self._lock:
            if self.held >= self.limit:
                raise Overdue(f"{self.limit} earlier calls to {self.name} are still unanswered")
        future: Future = Future()
        state = {"done": False, "given_up": False}

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                with self._lock:
                    state["done"] = True
                    self.held -= state["given_up"]

        threading.Thread(target=run, name=f"vigil-{self.name}", daemon=True).start()
        try:
            return future.result(timeout=timeout)
        except FutureTimeout as exc:
            with self._lock:
                if not state["done"]:
                    state["given_up"] = True
                    self.held += 1
            raise Overdue(f"no complete answer from {self.name} within {timeout:g} s") from exc
