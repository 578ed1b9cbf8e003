"""A tiny Alertmanager v2 stand-in for the adversarial reconcile tests: GET /api/v2/alerts honours
`silenced`, `inhibited` and `receiver` as Alertmanager does (silenced alerts are left out when
silenced=false); POST /api/v2/silences silences matching alerts; DELETE /api/v2/silence/<id> expires.
`raw` (when set) is served as the alerts body verbatim (a garbage answer)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeAlertmanager:
    def __init__(self) -> None:
        self.alerts: list[dict] = []  # {"labels", "startsAt", "fingerprint", "receiver"}
        self.silences: dict[str, list[dict]] = {}
        self.raw: str | None = None
        self.queries: list[dict] = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                u = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                fake.queries.append(q)
                if u.path != "/api/v2/alerts":
                    return self._send(404, "not found")
                if fake.raw is not None:
                    return self._send(200, fake.raw)
                out = []
                for a in fake.alerts:
                    silenced_by = [sid for sid, ms in fake.silences.items()
                                   if all(a["labels"].get(m["name"]) == m["value"] for m in ms)]
                    if silenced_by and q.get("silenced") == "false":
                        continue
                    if q.get("receiver") and q["receiver"] != a.get("receiver", "vigil"):
                        continue
                    out.append({"labels": a["labels"], "annotations": {}, "startsAt": a["startsAt"],
                                "endsAt": "2099-01-01T00:00:00Z", "updatedAt": a["startsAt"],
                                "fingerprint": a["fingerprint"], "generatorURL": "",
                                "receivers": [{"name": a.get("receiver", "vigil")}],
                                "status": {"state": "suppressed" if silenced_by else "active",
                                           "silencedBy": silenced_by, "inhibitedBy": []}})
                return self._send(200, json.dumps(out))

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                sid = str(uuid.uuid4())
                fake.silences[sid] = body["matchers"]
                return self._send(200, json.dumps({"silenceID": sid}))

            def do_DELETE(self):
                sid = self.path.rsplit("/", 1)[-1]
                fake.silences.pop(sid, None)
                return self._send(200, "")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
