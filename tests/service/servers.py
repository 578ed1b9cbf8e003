"""Real HTTP servers on 127.0.0.1 that behave like inference endpoints, healthy or not."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Endpoint:
    """/health answers `health_status`; /slow sleeps; /err is 500; /hang never answers; the
    OpenAI routes stream `tokens` SSE chunks `token_delay` apart; KServe v2 answers outputs."""

    def __init__(self) -> None:
        self.health_status = 200
        self.tokens = 3
        self.token_delay = 0.05
        self.first_token_delay = 0.0
        self.requests = 0
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                outer.requests += 1
                if self.path == "/health":
                    self._send(outer.health_status, b"ok" if outer.health_status == 200 else b"down")
                elif self.path == "/slow":
                    time.sleep(2)
                    self._send(200, b"ok")
                elif self.path == "/err":
                    self._send(500, b"boom")
                elif self.path == "/hang":
                    outer.released.wait(60)
                else:
                    self._send(404, b"no")

            def do_POST(self) -> None:
                outer.requests += 1
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.startswith("/v2/models/"):
                    self._send(200, json.dumps({"model_name": "m", "outputs": [
                        {"name": "out", "shape": [1], "datatype": "BYTES", "data": ["pong"]}]}).encode(),
                        "application/json")
                    return
                chat = self.path == "/v1/chat/completions"
                if not req.get("stream"):
                    choice = {"message": {"content": "pong"}} if chat else {"text": "pong"}
                    self._send(200, json.dumps({"choices": [choice]}).encode(), "application/json")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(data: bytes) -> None:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                time.sleep(outer.first_token_delay)
                for i in range(outer.tokens):
                    piece = {"delta": {"content": f"t{i}"}} if chat else {"text": f"t{i}"}
                    chunk(b"data: " + json.dumps({"choices": [piece]}).encode() + b"\n\n")
                    time.sleep(outer.token_delay)
                chunk(b"data: [DONE]\n\n")
                chunk(b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
