"""Oversized webhook bodies get the JSON 413 that the client reads, whatever their size: within
waitress's own limit from the app, above it from waitress, and in both cases the server reads and
discards what the client still sends (up to a bound) before closing, so the client sees the answer
and not a connection reset."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import requests
import yaml

from tests.k8s.controlplane import free_port, wait_until

TOKEN = "oversize-token-0123456789"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oversize")
    cfg = tmp / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({"auth": {"bearer_token_env": "VIGIL_OVERSIZE_TOKEN"},
                                   "ledger": {"path": str(tmp / "ledger.db")}, "safety": {"dry_run": True},
                                   "server": {"max_body_bytes": MIB}}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                             f"127.0.0.1:{port}"], env={**os.environ, "VIGIL_OVERSIZE_TOKEN": TOKEN},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, 60, what="remediator up")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.integration
@pytest.mark.parametrize("size", [2 * 1000 * 1000, 5 * MIB, 40 * MIB], ids=["2MB", "5MiB", "40MiB"])
def test_an_oversized_body_gets_a_json_413_the_client_reads(server, size):
    r = requests.post(f"{server}/webhook/alertmanager", data=b" " * size, timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:200]
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]
    assert requests.get(f"{server}/healthz", timeout=5).ok  # and the server is still fine


@pytest.mark.integration
def test_the_413_comes_before_the_client_finishes_a_huge_body(server):
    """A sender that reads while it sends sees the 413 early, and the connection is closed cleanly
    (EOF after the answer, not a reset) once it stops sending."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {512 * MIB}\r\n\r\n".encode())
        s.sendall(b" " * MIB)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        s.shutdown(socket.SHUT_WR)
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower() and b'"error"' in body
