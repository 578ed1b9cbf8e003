"""A TLS-terminating HTTP proxy on 127.0.0.1 in front of the local API server that injects faults
into a share of the requests: 429 with Retry-After, 500, a connection reset before forwarding, a
reset after forwarding (the write applied, its answer lost), delays (some past the client's
request timeout, so the client gives up while the write still applies), and a trickle: the real
answer, a byte at a time, each within the client's read timeout (only a total deadline ends it).
Watches are relayed as they stream."""

from __future__ import annotations

import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import urllib3

from tests.k8s.pki import write_pki

FAULTS = ("429", "500", "reset_before", "reset_after", "delay", "slow")  # the default mix; also "trickle"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on a slow answer closed its end: expected here


class FaultProxy:
    def __init__(self, upstream: str, upstream_ca: Path, workdir: Path, *, rate: float = 0.3, seed: int = 7,
                 slow: float = 3.0, faults: tuple[str, ...] = FAULTS, trickle: float = 0.5) -> None:
        self.upstream, self.rate, self.slow = upstream.rstrip("/"), rate, slow
        self.faults, self.trickle = faults, trickle
        self.closed = threading.Event()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(upstream_ca), maxsize=16)
        pki = write_pki(workdir)
        self.ca = pki["ca.crt"]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pick(self) -> str:
        with self.lock:
            fault = self.rng.choice(self.faults) if self.rng.random() < self.rate else "none"
            self.counts[fault] += 1
            return fault

    def close(self) -> None:
        self.closed.set()  # trickles stop
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _head(self, status: int, length: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self._head(status, len(body), headers)
                self.wfile.write(body)

            def _status(self, code: int, reason: str, extra: dict[str, str]) -> None:
                body = (f'{{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"{reason}",'
                        f'"code":{code}}}').encode()
                self._reply(code, body, {"Content-Type": "application/json", **extra})

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy.pick()
                if fault == "reset_before":
                    return self._reset()
                if fault == "429":
                    return self._status(429, "TooManyRequests", {"Retry-After": "1"})
                if fault == "500":
                    return self._status(500, "InternalError", {})
                if fault in ("delay", "slow"):
                    time.sleep(proxy.slow if fault == "slow" else proxy.rng.uniform(0.1, 1.0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                if "watch=true" in self.path.lower():
                    return self._watch(fault, body, headers)
                resp = proxy.pool.request(self.command, proxy.upstream + self.path, body=body, headers=headers,
                                          retries=False, redirect=False, timeout=30, preload_content=True)
                if fault == "reset_after":
                    return self._reset()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
                if fault == "trickle":
                    return self._trickle(resp.status, resp.data, out)
                self._reply(resp.status, resp.data, out)
                return None

            def _watch(self, fault: str, body: bytes | None, headers: dict[str, str]) -> None:
                """A watch is relayed as it streams (chunked), as the API server sends it: buffering it
                whole would hand the client a minute's events at once and make every watch-fed cache
                that far behind, which no real API server does."""
                resp = proxy.pool.request(self.command, proxy.upstream + self.path, body=body, headers=headers,
                                          retries=False, redirect=False, preload_content=False,
                                          timeout=urllib3.Timeout(connect=10, read=600))
                try:
                    if fault == "reset_after":
                        return self._reset()
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        if k.lower() not in HOP:
                            self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    while not proxy.closed.is_set() and (chunk := resp.read1(65536)):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the client gave up on the watch: close ours
                    self.close_connection = True
                finally:
                    resp.release_conn()
                return None

            def _trickle(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self._head(status, len(body), headers)
                self.wfile.flush()
                for i in range(len(body)):  # a client that gave up closed its end: the write raises
                    if proxy.closed.wait(proxy.trickle):
                        return self._reset()
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                return None

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        return Handler
