"""The baseline for ingest: the same Flask + waitress setup (the remediator's default thread count)
whose webhook handler only answers."""

from __future__ import annotations

import sys

from flask import Flask, jsonify, request
from waitress import serve

from remediator.config import SERVER_THREADS


def main() -> None:
    app = Flask("noop")

    @app.post("/webhook/alertmanager")
    def webhook():
        request.get_data(cache=False)
        return jsonify({"status": "recorded"})

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=SERVER_THREADS, ident="vigil")


if __name__ == "__main__":
    main()
