"""A seeded generator of hostile webhook requests and a keep-alive client that sends them.

Each request is (method, path, headers, body, declared_length): valid bodies, truncations, wrong
types, huge strings, deep nesting, lone surrogates (escaped and raw), extreme dates and offsets,
oversize bodies (past the app's limit, and a declared length past waitress's), wrong content types,
bad credentials and random bytes. Cheap to make: templates plus seeded mutations."""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

PATH = "/webhook/alertmanager"
DATES = ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
         "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
         "2026-13-01T00:00:00Z", "2026-11-29T23:59:60Z", "2026-11-29T12:00:00.1234567890123456789Z",
         "2026-11-29T12:00:00+24:00", "2026-11-29T12:00:00+99:99", "2026-11-29T12:00:00", "yesterday", "",
         "1970-01-01T00:00:00Z", "2026-11-29T12:00:00.5-23:59", "\u0662\u0660\u0662\u0666-01-01T00:00:00Z"]
WEIRD = [None, True, False, 0, -1, 2**63, 2**70, 1.5e308, "", "x" * 300, [], {}, [1, "a", None], {"a": {"b": []}},
         "\u0000", "\u202e", "\U0001f600"]
SURROGATES = [b'"\\ud800"', b'"a\\udfffb"', b'"\\udc00\\ud800"', b'"\xed\xa0\x80"', b'"\xff\xfe"', b'"\\ud83d"']


@dataclass
class Request:
    kind: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = PATH
    declared: int | None = None  # Content-Length sent without the body (past waitress's limit)
    chunked: bool = False


class Generator:
    def __init__(self, seed: int, token: str, max_body: int, waitress_limit: int, alertname: str = "Fuzz") -> None:
        self.rng = random.Random(seed)
        self.token, self.max_body, self.waitress_limit, self.alertname = token, max_body, waitress_limit, alertname
        self.n = 0
        self.kinds: list[tuple[str, Callable[[], Request]]] = [
            ("valid", self.valid), ("truncated", self.truncated), ("wrong_type", self.wrong_type),
            ("huge_string", self.huge_string), ("deep", self.deep), ("surrogate", self.surrogate),
            ("date", self.date), ("oversize", self.oversize), ("content_type", self.content_type),
            ("auth", self.bad_auth), ("bytes", self.random_bytes), ("top_level", self.top_level),
            ("many_alerts", self.many_alerts), ("other_route", self.other_route),
        ]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def _alert(self) -> dict:
        self.n += 1
        fp = f"{self.rng.getrandbits(60):x}{self.n:x}"
        labels = {"alertname": self.alertname, "node": f"fuzz-{self.rng.randrange(1000)}", "i": str(self.n)}
        for _ in range(self.rng.randrange(4)):
            labels[f"k{self.rng.randrange(50)}"] = "v" * self.rng.randrange(40)
        return {"status": self.rng.choice(["firing", "firing", "resolved"]), "labels": labels,
                "annotations": {"summary": "fuzz"}, "startsAt": "2026-11-29T12:00:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fp}

    def _body(self, alerts: int = 1) -> dict:
        return {"version": "4", "status": "firing", "receiver": "vigil", "groupKey": "{}:{alertname=\"Fuzz\"}",
                "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "http://127.0.0.1:9093", "alerts": [self._alert() for _ in range(alerts)]}

    def _req(self, kind: str, body: dict | bytes) -> Request:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Request(kind, raw, self._headers(), chunked=self.rng.random() < 0.05)

    def valid(self) -> Request:
        return self._req("valid", self._body(self.rng.randrange(1, 4)))

    def truncated(self) -> Request:
        raw = json.dumps(self._body()).encode()
        return self._req("truncated", raw[:self.rng.randrange(len(raw))])

    def wrong_type(self) -> Request:
        b = self._body()
        if self.rng.random() < 0.3:
            b["alerts"][0]["labels"][self.rng.choice(["alertname", "node"])] = self.rng.choice(WEIRD)
        target = b if self.rng.random() < 0.4 else b["alerts"][0]
        key = self.rng.choice(list(target))
        target[key] = self.rng.choice(WEIRD)
        return self._req("wrong_type", b)

    def huge_string(self) -> Request:
        b = self._body()
        size = self.rng.randrange(self.max_body // 2, self.max_body - 2000)
        where = self.rng.choice(["label", "key", "annotation", "fingerprint", "receiver", "startsAt"])
        big = self.rng.choice("a0\u00e9") * (size // 2)
        if where == "label":
            b["alerts"][0]["labels"]["big"] = big
        elif where == "key":
            b["alerts"][0]["labels"][big] = "v"
        elif where == "annotation":
            b["alerts"][0]["annotations"]["description"] = big
        elif where == "fingerprint":
            b["alerts"][0]["fingerprint"] = "a" * size
        elif where == "receiver":
            b["receiver"] = big
        else:
            b["alerts"][0]["startsAt"] = "2026-11-29T12:00:00." + "1" * size + "Z"
        return self._req("huge_string", b)

    def deep(self) -> Request:
        depth = self.rng.choice([100, 1000, 1025, 2000, 5000])
        opener, closer = self.rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        nested = opener * depth + b"1" + closer * depth
        raw = json.dumps(self._body()).encode().replace(b'"truncatedAlerts": 0', b'"x": ' + nested + b', '
                                                        b'"truncatedAlerts": 0')
        return self._req("deep", raw if self.rng.random() < 0.7 else nested)

    def surrogate(self) -> Request:
        b = self._body()
        b["alerts"][0]["labels"]["node"] = "SURROGATE"
        if self.rng.random() < 0.3:
            b["alerts"][0]["labels"]["SURROGATE"] = "v"
        raw = json.dumps(self._body() if self.rng.random() < 0.1 else b).encode()
        spot = self.rng.choice(SURROGATES)
        raw = raw.replace(b'"SURROGATE"', spot) if b"SURROGATE" in raw else raw.replace(b'"vigil"', spot)
        return self._req("surrogate", raw)

    def date(self) -> Request:
        b = self._body()
        b["alerts"][0][self.rng.choice(["startsAt", "endsAt"])] = self.rng.choice(DATES)
        return self._req("date", b)

    def oversize(self) -> Request:
        if self.rng.random() < 0.1:  # declared past waitress's own limit: refused before the body is read
            return Request("oversize", b"", self._headers(), declared=self.waitress_limit + 1 +
                           self.rng.randrange(10**9))
        raw = b'{"version": "4", "pad": "' + b"p" * (self.max_body + self.rng.randrange(1, 3000)) + b'"}'
        return Request("oversize", raw, self._headers(), chunked=self.rng.random() < 0.3)

    def content_type(self) -> Request:
        r = self.valid() if self.rng.random() < 0.5 else self.truncated()
        r.kind = "content_type"
        r.headers["Content-Type"] = self.rng.choice(["text/plain", "application/x-www-form-urlencoded",
                                                     "multipart/form-data; boundary=zz", "application/xml",
                                                     "application/json; charset=latin-1", "", "\u00ff/\u00ff"])
        return r

    def bad_auth(self) -> Request:
        r = self.valid()
        r.kind = "auth"
        choice = self.rng.randrange(6)
        if choice == 0:
            del r.headers["Authorization"]
        else:
            r.headers["Authorization"] = ["Bearer wrong", "Basic !!!", "Basic Zm9vOmJhcg==", "Bearer " + "x" * 5000,
                                          "bearer", "Bearer \u00e9\u00e8"][choice - 1]
        return r

    def random_bytes(self) -> Request:
        return self._req("bytes", self.rng.randbytes(self.rng.randrange(0, 2000)))

    def top_level(self) -> Request:
        return self._req("top_level", self.rng.choice([b"[]", b'"x"', b"1", b"null", b"{}", b'{"version": 4}',
                                                       b'{"version": "4"}', b'{"version": "4", "alerts": null}',
                                                       b'{"version":"4","status":"firing","alerts":[null]}', b""]))

    def many_alerts(self) -> Request:
        return self._req("many_alerts", self._body(self.rng.randrange(20, 60)))

    def other_route(self) -> Request:
        method, path = self.rng.choice([("GET", PATH), ("PUT", PATH), ("GET", "/api/incidents?limit=abc"),
                                        ("GET", "/api/incidents?limit=100000"), ("GET", "/api/incidents/99999999"),
                                        ("POST", "/api/pause"), ("GET", "/nope"), ("GET", "/api/incidents/x")])
        return Request("other_route", b"{" if method != "GET" else b"", self._headers(), method=method, path=path)

    def __iter__(self) -> Iterator[Request]:
        weights = [12, 8, 10, 3, 4, 8, 10, 3, 6, 6, 6, 6, 2, 4]
        kinds = [k for _, k in self.kinds]
        while True:
            yield self.rng.choices(kinds, weights)[0]()


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes


class Client:
    """One keep-alive connection; reconnects after the server closes it (as it does after errors)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, r: Request) -> Response:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                return self._send(self.conn, r)
            except (TimeoutError, ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _send(self, conn: http.client.HTTPConnection, r: Request) -> Response:
        conn.putrequest(r.method, r.path, skip_accept_encoding=True)
        for k, v in r.headers.items():
            conn.putheader(k, v.encode("utf-8"))
        if r.chunked and r.declared is None:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(r.body), 65536):
                piece = r.body[i:i + 65536]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.putheader("Content-Length", str(r.declared if r.declared is not None else len(r.body)))
            conn.endheaders(r.body if r.declared is None else None)
        resp = conn.getresponse()
        out = Response(resp.status, resp.getheader("Content-Type", ""), resp.read())
        if resp.will_close or r.declared is not None:
            self.close()
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
