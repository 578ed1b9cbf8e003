"""The baseline for ingest: the same Flask + waitress setup whose webhook handler only answers."""

from __future__ import annotations

import sys

from flask import Flask, jsonify, request
from waitress import serve


def main() -> None:
    app = Flask("noop")

    @app.post("/webhook/alertmanager")
    def webhook():
        request.get_data(cache=False)
        return jsonify({"status": "recorded"})

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, ident="vigil")


if __name__ == "__main__":
    main()
