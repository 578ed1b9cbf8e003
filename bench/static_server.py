"""Serves one file's bytes as /metrics through the exporter's own HTTP server: the baseline."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable

from exporters.http import CONTENT_TYPE, serve


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        body = f.read()

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    serve(app, "127.0.0.1", int(sys.argv[2]))
    threading.Event().wait()


if __name__ == "__main__":
    main()
