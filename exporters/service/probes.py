"""One probe of one target: HTTP health, a tiny inference request, or a TCP connect. The failure
reason is one of a bounded set, so it can be a label: timeout, connect, status, body, tls."""

from __future__ import annotations

import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from exporters.service.config import Module

REASONS = ("timeout", "connect", "status", "body", "tls")


@dataclass(frozen=True)
class Result:
    success: bool
    duration: float
    status_code: int = 0
    reason: str = ""  # one of REASONS when not successful
    ttft: float | None = None  # streaming inference: seconds to the first token


class _Deadline(Exception):
    pass


def _pool(module: Module) -> urllib3.PoolManager:
    kw = {"cert_reqs": "CERT_NONE"} if module.insecure_skip_verify else {"cert_reqs": "CERT_REQUIRED"}
    if module.ca_file:
        kw["ca_certs"] = module.ca_file
    return urllib3.PoolManager(num_pools=64, maxsize=4, retries=False, **kw)


class Prober:
    """Connection pools per module, shared by the background scheduler and /probe."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self._pools = {name: _pool(m) for name, m in modules.items() if m.prober != "tcp"}

    def probe(self, url: str, module_name: str, timeout: float | None = None) -> Result:
        module = self.modules[module_name]
        bound = min(timeout, module.timeout) if timeout else module.timeout
        start = time.perf_counter()
        if module.prober == "tcp":
            return _tcp(url, bound, start)
        try:
            if module.prober == "http":
                return self._http(url, module, bound, start)
            return self._inference(url, module, bound, start)
        except NewConnectionError:  # before the timeouts: urllib3 derives it from ConnectTimeoutError
            return Result(False, time.perf_counter() - start, reason="connect")
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError, _Deadline):
            return Result(False, time.perf_counter() - start, reason="timeout")
        except SSLError:
            return Result(False, time.perf_counter() - start, reason="tls")
        except MaxRetryError as exc:
            reason = exc.reason
            kind = ("tls" if isinstance(reason, SSLError) else "connect" if isinstance(reason, NewConnectionError)
                    else "timeout" if isinstance(reason, ConnectTimeoutError | ReadTimeoutError) else "connect")
            return Result(False, time.perf_counter() - start, reason=kind)
        except (ProtocolError, OSError, urllib3.exceptions.HTTPError):
            return Result(False, time.perf_counter() - start, reason="connect")

    def _http(self, url: str, m: Module, bound: float, start: float) -> Result:
        r = self._pools[m.name].request(m.method, url.rstrip("/") + m.path, headers=m.headers,
                                        timeout=urllib3.Timeout(connect=bound, read=bound), preload_content=False)
        body = _read_all(r, start + bound)
        elapsed = time.perf_counter() - start
        if r.status not in m.valid_status_codes:
            return Result(False, elapsed, r.status, "status")
        if m.body_regex and not m.body_regex.search(body.decode(errors="replace")):
            return Result(False, elapsed, r.status, "body")
        return Result(True, elapsed, r.status)

    def _inference(self, url: str, m: Module, bound: float, start: float) -> Result:
        path = m.path.replace("{model}", m.model)
        if m.api == "kserve_v2":
            body = {"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "data": [m.prompt]}]}
            stream = False
        elif m.api == "openai_chat":
            body = {"model": m.model, "messages": [{"role": "user", "content": m.prompt}],
                    "max_tokens": m.max_tokens, "stream": m.stream}
            stream = m.stream
        else:
            body = {"model": m.model, "prompt": m.prompt, "max_tokens": m.max_tokens, "stream": m.stream}
            stream = m.stream
        r = self._pools[m.name].request("POST", url.rstrip("/") + path, body=json.dumps(body).encode(),
                                        headers={"Content-Type": "application/json", **m.headers},
                                        timeout=urllib3.Timeout(connect=bound, read=bound), preload_content=False)
        deadline = start + bound
        if r.status not in m.valid_status_codes:
            _read_all(r, deadline)
            return Result(False, time.perf_counter() - start, r.status, "status")
        if not stream:
            data = _read_all(r, deadline)
            ok = _valid_response(m.api, data)
            return Result(ok, time.perf_counter() - start, r.status, "" if ok else "body")
        ttft = None
        buf = b""
        done = False
        for chunk in r.stream(1024):
            if time.perf_counter() > deadline:
                raise _Deadline
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                if ttft is None and _has_token(payload):
                    ttft = time.perf_counter() - start
        elapsed = time.perf_counter() - start
        r.release_conn()
        if ttft is None or not done:
            return Result(False, elapsed, r.status, "body", ttft)
        return Result(True, elapsed, r.status, "", ttft)


def _read_all(r: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
    out = b""
    for chunk in r.stream(65536):
        out += chunk
        if time.perf_counter() > deadline:
            raise _Deadline
        if len(out) > 1 << 20:  # a health page is small; never hold a huge body
            break
    r.release_conn()
    return out


def _has_token(payload: bytes) -> bool:
    try:
        event = json.loads(payload)
    except ValueError:
        return False
    for choice in event.get("choices") or []:
        if choice.get("text") or (choice.get("delta") or {}).get("content"):
            return True
    return False


def _valid_response(api: str, data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    if api == "kserve_v2":
        return isinstance(doc.get("outputs"), list) and bool(doc["outputs"])
    return isinstance(doc.get("choices"), list) and bool(doc["choices"])


def _tcp(url: str, bound: float, start: float) -> Result:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=bound):
            pass
    except TimeoutError:
        return Result(False, time.perf_counter() - start, reason="timeout")
    except ssl.SSLError:
        return Result(False, time.perf_counter() - start, reason="tls")
    except OSError:
        return Result(False, time.perf_counter() - start, reason="connect")
    return Result(True, time.perf_counter() - start)
