"""Adversarial: a Prometheus (or a proxy in front of it) that answers the headers and then sends
the body one byte at a time, never finishing. The HTTP client's timeout is per socket read, so
every read succeeded and a guard, a verification or a GPU-scoped drain waited forever: with a
guard on the engine's thread, no incident was decided any more. `prometheus.timeout` must bound
the whole query: the check is unknown (the rule's mode decides), never a hang. A real socket
server; no mock of the client."""

from __future__ import annotations

import socket
import threading

import pytest

from remediator.cluster.prom import PromChecker
from remediator.domain.models import UNKNOWN


@pytest.fixture
def trickling_prometheus():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()
    served = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
            served.set()
            while not stop.wait(0.2):  # one byte per 0.2 s: each read well inside the per-read timeout
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", served
    stop.set()
    srv.close()


def _bounded(fn, limit: float = 60.0):
    """Run fn in a thread; None if it has not returned within `limit` (a generous ceiling that only a
    hang reaches: this is a liveness check, not a timing assertion)."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(limit)
    return out[0] if out else None


def test_a_trickling_prometheus_makes_a_check_unknown_not_a_hang(trickling_prometheus):
    url, served = trickling_prometheus
    checker = PromChecker(url, timeout=1.0)
    result = _bounded(lambda: checker.check("up == 1"))
    assert served.is_set(), "the server never saw the query"
    assert result is not None, "the check hung on a body that never ends"
    assert result.outcome == UNKNOWN, result
    # the next check within the window is unknown at once (no second hung query piles up)
    again = _bounded(lambda: checker.check("up == 1"))
    assert again is not None and again.outcome == UNKNOWN


def test_series_on_a_trickling_prometheus_is_none_not_a_hang(trickling_prometheus):
    url, _ = trickling_prometheus
    checker = PromChecker(url, timeout=1.0)
    assert _bounded(lambda: checker.series('gpu_allocation_info{node="n1"}') or "none") == "none"


def test_a_trickling_alertmanager_fails_a_silence_not_hangs_the_repair(trickling_prometheus):
    """The same server in front of Alertmanager: the silence around a GPU reset or a reboot is
    created on the action's thread, which hung for ever; it must fail (SilenceError) at the timeout."""
    import datetime as dt

    from remediator.cluster.silences import SilenceError, Silences
    from remediator.domain.repair import SilenceSettings

    url, served = trickling_prometheus
    silences = Silences(SilenceSettings(alertmanager_url=url, timeout=1.0))

    def create():
        try:
            silences.create(node="n1", uuid="GPU-1", incident="7", reason="reset", now=dt.datetime.now(dt.UTC))
        except SilenceError as exc:
            return exc
        return "created"

    out = _bounded(create)
    assert served.is_set()
    assert isinstance(out, SilenceError), out
