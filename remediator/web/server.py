"""The WSGI server (waitress) in front of the app. Every answer is JSON, also the ones waitress
writes itself (a body over its own limit, a malformed request line, headers too large), so a sender
never has to parse text. Waitress's body limit sits well above the app's: between the two, Flask
answers 413 after reading nothing; above, waitress refuses before buffering the body to disk.

After an error answer the connection is closed the way nginx's lingering close does it: the answer
is sent, then our side of the connection is shut (the client reads the answer and EOF), and what the
client still sends is read and discarded, up to DRAIN_BYTES or DRAIN_SECONDS. Closing at once with
unread data makes the kernel send a reset, and a client still sending its body would see that
instead of the 413."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

DRAIN_BYTES = 64 * 1024 * 1024  # what a client may still send after the error answer, read and dropped
DRAIN_SECONDS = 10.0


def waitress_limit(app_limit: int) -> int:
    """Twice the app's limit plus 1 MiB: ordinary oversize bodies reach Flask's JSON 413."""
    return 2 * app_limit + 1024 * 1024


class JsonErrorTask(ErrorTask):
    def execute(self) -> None:
        e = self.request.error
        error = (e.reason or "error").lower().replace(" ", "_")
        body = json.dumps({"error": error, "detail": e.body or e.reason}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        self.channel.linger = True


class JsonChannel(HTTPChannel):
    """Waitress's channel with JSON error answers and a lingering close after them."""

    error_task_class = JsonErrorTask
    linger = False  # set by an error answer: drain before closing
    _drain_left = 0
    _drain_until = 0.0
    _draining = False

    def handle_close(self) -> None:
        if not self.linger or self._draining or not self.connected:
            super().handle_close()
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)  # the answer is flushed: FIN after it
        except OSError:
            super().handle_close()
            return
        self._draining, self.will_close, self.close_when_flushed = True, False, False
        self._drain_left, self._drain_until = DRAIN_BYTES, time.monotonic() + DRAIN_SECONDS

    def readable(self) -> bool:
        return True if self._draining else super().readable()

    def writable(self) -> bool:  # the loop polls about every second: the time bound is checked here
        if self._draining:
            return self.will_close or time.monotonic() >= self._drain_until
        return super().writable()

    def handle_write(self) -> None:
        if self._draining:
            super().handle_close()
            return
        super().handle_write()

    def handle_read(self) -> None:
        if not self._draining:
            super().handle_read()
            return
        try:
            data = self.recv(self.adj.recv_bytes)  # closes the channel itself on EOF or a reset
        except OSError:
            data = b""
        if not self.connected:
            return
        self._drain_left -= len(data)
        if not data or self._drain_left <= 0 or time.monotonic() >= self._drain_until:
            super().handle_close()


def make_server(app: Any, *, host: str, port: int, max_body_bytes: int, threads: int) -> Any:
    server = create_server(app, host=host, port=port, threads=threads, ident="vigil",
                           max_request_body_size=waitress_limit(max_body_bytes), clear_untrusted_proxy_headers=True)
    server.channel_class = JsonChannel  # used for every accepted connection
    return server


def close(server: Any, *, timeout: float = 7.0) -> None:
    """Stop accepting, let the requests in flight finish (at most `timeout` s: longer than /readyz
    can take, 6 s for its Kubernetes ping and 2 s bounds for the ledger's, so a probe in flight under
    API faults is answered, not cut off with a traceback), then close the idle keep-alive
    connections so `server.run()` returns (waitress's loop runs while any is open)."""
    wasyncore.dispatcher.close(server)  # the listener only: its trigger wakes the loop for answers in flight
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (server.task_dispatcher.queue or server.task_dispatcher.active_count):
        time.sleep(0.05)
    for channel in list(server._map.values()):
        if channel is not server.trigger:
            channel.will_close = True  # as waitress's own maintenance() does for idle channels
    server.trigger.close()  # (server.close() closes it first: an answer still being written then fails)
