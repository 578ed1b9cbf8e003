"""The VigilState object (pause, breaker) kept by a watch, for the Kubernetes ledger: the runner
reads the pause before every action, and a GET each time was one more request to fail under API
faults. Until the watch has listed (and again after it broke, until it has listed anew) `get`
answers None and the ledger reads the API instead."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _rv(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class StateCache:
    def __init__(self, api: Any, plural: str, name: str, *, call: Callable[..., Any], stop: threading.Event) -> None:
        """`api` is the ledger's ObjectAPI; `call` its retrying wrapper; `stop` ends the watch."""
        self.api, self.plural, self.name, self._call, self._stop = api, plural, name, call, stop
        self._lock = threading.Lock()
        self._obj: dict | None = None
        self._watched = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-state-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def get(self) -> tuple[bool, dict | None]:
        """(known, the object or None where there is none): known only while the watch is listed."""
        with self._lock:
            return self._watched.is_set(), self._obj

    def put(self, obj: dict | None, *, replace: bool = False) -> None:
        """A newer version (from the watch, or this process's own write); `replace` for a LIST."""
        with self._lock:
            old = self._obj
            if replace or obj is None or old is None or _rv(obj) >= _rv(old):
                self._obj = obj

    def _run(self) -> None:
        rv = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = self._call(self.api.list, self.plural)
                    self.put(next((o for o in items if o["metadata"]["name"] == self.name), None), replace=True)
                    self._watched.set()
                for kind, obj in self.api.watch(self.plural, rv, 60):
                    if kind == "ERROR":
                        raise ConnectionError("watch expired")
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if obj["metadata"].get("name") == self.name and kind != "BOOKMARK":
                        self.put(None if kind == "DELETED" else obj, replace=kind == "DELETED")
                    if self._stop.is_set():
                        return
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("state watch: %s; listing again", exc)
                self._watched.clear()  # the ledger reads the API until the watch has listed again
                rv = None
                self._stop.wait(1.0)
