"""The WSGI server (waitress) in front of the app. Every answer is JSON, also the ones waitress
writes itself (a body over its own limit, a malformed request line, headers too large), so a sender
never has to parse text. Waitress's body limit sits well above the app's: between the two, Flask
answers 413 after reading nothing; above, waitress refuses before buffering the body to disk."""

from __future__ import annotations

import json
import time
from typing import Any

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask


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


class JsonChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def make_server(app: Any, *, host: str, port: int, max_body_bytes: int, threads: int) -> Any:
    server = create_server(app, host=host, port=port, threads=threads, ident="vigil",
                           max_request_body_size=waitress_limit(max_body_bytes), clear_untrusted_proxy_headers=True)
    server.channel_class = JsonChannel  # used for every accepted connection
    return server


def close(server: Any, *, timeout: float = 3.0) -> None:
    """Stop accepting, let the requests in flight finish (at most `timeout` s), then close the
    idle keep-alive connections so `server.run()` returns (waitress's loop runs while any is open)."""
    server.close()  # the listener
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (server.task_dispatcher.queue or server.task_dispatcher.active_count):
        time.sleep(0.05)
    for channel in list(server._map.values()):
        channel.will_close = True  # as waitress's own maintenance() does for idle channels
