from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporters.gpu.exporter import GpuExporter, build
from exporters.gpu.simulated import SimulatedNVML


class Clock:
    """A clock the test moves; the simulated GPU values are functions of it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Series = dict[tuple[str, frozenset], float]


def parse(text: str) -> Series:
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def pick(series: Series, name: str, **labels: str) -> dict[frozenset, float]:
    want = set(labels.items())
    return {lbl: v for (n, lbl), v in series.items() if n == name and want <= lbl}


def one(series: Series, name: str, **labels: str) -> float:
    found = pick(series, name, **labels)
    assert len(found) == 1, f"{name}{labels}: expected one series, found {found}"
    return next(iter(found.values()))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> SimulatedNVML:
    return SimulatedNVML(8, clock=clock)


def make_exporter(nvml, **kw) -> GpuExporter:
    kw.setdefault("min_interval", 0.0)
    kw.setdefault("nvlink_interval", 0.0)
    kw.setdefault("backoff", (0.05, 0.2))
    kw.setdefault("xid_wait_ms", 50)
    kw.setdefault("collect_timeout", 5.0)
    exp = build(nvml, **kw)
    exp.start()
    return exp


@pytest.fixture
def exporter(sim: SimulatedNVML) -> Iterator[GpuExporter]:
    exp = make_exporter(sim)
    yield exp
    exp.watcher.stop()


def scrape(exp: GpuExporter) -> Series:
    return parse(exp.exposition().decode())


def wait_for(pred, timeout: float = 5.0, interval: float = 0.02) -> bool:
    ev = threading.Event()
    deadline = timeout / interval
    for _ in range(int(deadline)):
        if pred():
            return True
        ev.wait(interval)
    return pred()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
