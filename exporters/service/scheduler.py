"""Background probing: every target once per interval, at a fixed phase of its own (so 500
targets spread over the interval instead of starting together), on a bounded pool. A probe that
is still running when its next turn comes is skipped, so a hanging target never piles up work
or delays the others."""

from __future__ import annotations

import hashlib
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from exporters.service.discovery import Target, Targets
from exporters.service.probes import Prober, Result


def phase(key: str, interval: float) -> float:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 10_000 / 10_000 * interval


class Scheduler:
    def __init__(self, targets: Targets, prober: Prober, *, interval: float, concurrency: int,
                 observe: Callable[[Target, Result], None], on_skip: Callable[[], None] = lambda: None,
                 on_start: Callable[[float], None] = lambda _: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.targets, self.prober, self.interval = targets, prober, interval
        self._observe, self._on_skip, self._on_start, self._clock = observe, on_skip, on_start, clock
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe")
        self._lock = threading.Lock()
        self.results: dict[str, tuple[Target, Result]] = {}
        self.start_delays: deque[float] = deque(maxlen=20_000)  # scheduled -> started, seconds
        self._inflight: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def running(self) -> bool:
        """The probe loop is alive: started and neither stopped nor crashed."""
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.targets.changed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def snapshot(self) -> list[tuple[Target, Result]]:
        with self._lock:
            return list(self.results.values())

    def _probe(self, target: Target, due: float) -> None:
        delay = max(self._clock() - due, 0.0)
        self.start_delays.append(delay)
        self._on_start(delay)
        try:
            result = self.prober.probe(target.url, target.module)
        except Exception:  # a prober bug must not kill the worker or lose the target
            result = Result(False, 0.0, reason="connect")
        with self._lock:
            self._inflight.discard(target.key)
            if target.key in self._current:
                self.results[target.key] = (target, result)
        self._observe(target, result)

    def _run(self) -> None:
        heap: list[tuple[float, str]] = []
        version = -1
        self._current: dict[str, Target] = {}
        while not self._stop.is_set():
            now = self._clock()
            if self.targets.version != version:
                version = self.targets.version
                self.targets.changed.clear()
                current = {t.key: t for t in self.targets.all()}
                base = now - now % self.interval
                for key in current.keys() - self._current.keys():
                    due = base + phase(key, self.interval)
                    heapq.heappush(heap, (due if due >= now else due + self.interval, key))
                with self._lock:
                    self._current = current
                    for key in list(self.results):
                        if key not in current:
                            del self.results[key]  # a vanished endpoint's series go away
            while heap and heap[0][0] <= now:
                due, key = heapq.heappop(heap)
                target = self._current.get(key)
                if target is None:
                    continue  # removed: drop from the schedule
                heapq.heappush(heap, (due + self.interval, key))
                with self._lock:
                    busy = key in self._inflight
                    if not busy:
                        self._inflight.add(key)
                if busy:
                    self._on_skip()
                    continue
                self._pool.submit(self._probe, target, due)
            wait = (heap[0][0] - self._clock()) if heap else self.interval
            self.targets.changed.wait(max(min(wait, self.interval), 0.0))
