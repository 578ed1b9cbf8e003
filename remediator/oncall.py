"""The on-call subcommands: talk to a running remediator over its HTTP API.

    remediator incidents [--status acting] [--alertname GpuXidCritical] [--limit 20] [--json]
    remediator show ID [--json]
    remediator pause --reason "node maintenance" [--for 2h]
    remediator resume
    remediator breaker-reset
    remediator state
    remediator approve|deny ID --reason "checked the node" [--step "reboot_node(node-7)"]

Where and who: --url (or VIGIL_URL, default http://127.0.0.1:9095) and a bearer token from
--token-file (or VIGIL_TOKEN_FILE) or the VIGIL_TOKEN environment variable. Reading needs a
credential with the read role, pause/resume/breaker-reset/approve/deny one with admin. Any failure (no
answer, a refusal, bad input) is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9095"


class ClientError(Exception):
    pass


class Client:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"--url: expected http://HOST:PORT or https://..., got {url!r}")
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 (a port out of range or not a number raises here)
        except ValueError as exc:
            raise ClientError(f"--url: {exc}: {url!r}") from exc
        if not parts.hostname:
            raise ClientError(f"--url: no host in {url!r}")
        if token is not None:
            try:
                token.encode("latin-1")  # what an HTTP header can carry
            except UnicodeEncodeError as exc:
                raise ClientError("the bearer token has characters an HTTP header cannot carry") from exc
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> Any:
        from urllib.parse import urlencode

        q = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        req = urllib.request.Request(f"{self.url}{path}{'?' + urlencode(q) if q else ''}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            hint = _unauthorized_hint(self.token) if exc.code == 401 else ""
            raise ClientError(f"{method} {path}: HTTP {exc.code}: {_error_text(exc)}{hint}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach the remediator at {self.url}: {reason}") from exc
        except ValueError as exc:
            raise ClientError(f"{method} {path}: the answer is not JSON") from exc


def _unauthorized_hint(token: str | None) -> str:
    sent = "the token was refused" if token else "no token was sent"
    return f" ({sent}: set VIGIL_TOKEN, VIGIL_TOKEN_FILE or --token-file to a read or admin credential)"


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
        return f"{body.get('error', '')}: {body.get('detail', '')}".strip(": ")
    except ValueError:
        return exc.reason or "error"


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or os.environ.get("VIGIL_TOKEN_FILE")
    if path:
        try:
            token = Path(os.path.expanduser(path)).read_text().strip()
        except OSError as exc:
            raise ClientError(f"--token-file {path}: {exc.strerror}") from exc
        if not token:
            raise ClientError(f"--token-file {path} is empty")
        return token
    return os.environ.get("VIGIL_TOKEN", "").strip() or None


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")


def _status(i: dict) -> str:
    """The status, and `unverifiable` where the check after acting stayed unknown (left to people)."""
    return f"{i['status']}/unverifiable" if i.get("verification") == "unverifiable" else i["status"]


def incidents(c: Client, args: argparse.Namespace) -> Any:
    data = c.call("GET", "/api/incidents", query={"status": args.status, "alertname": args.alertname,
                                                   "limit": args.limit})
    if args.json:
        return data
    rows = [("ID", "STATUS", "REASON", "ALERT", "RULE", "UPDATED", "LABELS")]
    rows += [(str(i["id"]), _status(i), i.get("reason") or "-", i["alertname"], i["rule"] or "-",
              i["updated_at"] or "-", _labels(i["labels"])) for i in data["items"]]
    widths = [max(len(r[k]) for r in rows) for k in range(6)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:6], widths, strict=True)) + "  " + r[6] for r in rows]
    return "\n".join([*lines, f"({len(data['items'])} of {data['total']})"])


def show(c: Client, args: argparse.Namespace) -> Any:
    i = c.call("GET", f"/api/incidents/{args.id}")
    if args.json:
        return i
    out = [f"incident {i['id']}: {i['alertname']} {_status(i)}" + (f" ({i['reason']}: {i['detail']})"
                                                                     if i["reason"] else ""),
           f"  labels:  {_labels(i['labels'])}", f"  rule:    {i['rule'] or '-'}",
           f"  alert:   {i['alert_status']} since {i['startsAt']}", "  trace:"]
    out += [f"    {t}" for t in i["trace"]] or ["    -"]
    out.append("  actions:")
    out += [f"    #{a['seq']} {a['type']}({a['target']}) {a['state']}"
            + (f": {a['result'].get('detail')}" if a["result"].get("detail") else "")
            for a in i["actions"]] or ["    -"]
    if i.get("verification"):
        out.append(f"  verification: {i['verification']}")
    out.append("  audit:")
    out += [f"    {e['at']} {e['event']} {json.dumps(e['detail'], sort_keys=True)}" for e in i["audit"]] or ["    -"]
    return "\n".join(out)


def pause(c: Client, args: argparse.Namespace) -> Any:
    if not args.reason.strip():
        raise ClientError("--reason must say why (it is shown on the status page and kept in the audit trail)")
    p = c.call("POST", "/api/pause", {"paused": True, "reason": args.reason, **({"for": args.for_} if args.for_
                                                                                 else {})})
    return p if args.json else f"paused by {p['by']}: {p['reason']} (until {p['until'] or 'resumed'})"


def resume(c: Client, args: argparse.Namespace) -> Any:
    p = c.call("POST", "/api/pause", {"paused": False})
    return p if args.json else "remediation resumed"


def _answer(c: Client, args: argparse.Namespace, verb: str) -> Any:
    if not args.reason.strip():
        raise ClientError("--reason must say why (it is kept in the audit trail)")
    r = c.call("POST", f"/api/incidents/{args.id}/{verb}", {"reason": args.reason,
                                                            **({"step": args.step} if args.step else {})})
    if args.json:
        return r
    then = "it goes on, every rail checked again" if verb == "approve" else \
        "the incident is handed to people; nothing more is done"
    return f"incident {r['incident']}: {', '.join(r['steps'])} {r['verdict']} by {r['by']}: {then}"


def approve(c: Client, args: argparse.Namespace) -> Any:
    return _answer(c, args, "approve")


def deny(c: Client, args: argparse.Namespace) -> Any:
    return _answer(c, args, "deny")


def breaker_reset(c: Client, args: argparse.Namespace) -> Any:
    r = c.call("POST", "/api/breaker/reset")
    return r if args.json else ("circuit breaker closed (it was open)" if r["was_open"] else
                                "circuit breaker was already closed")


def state(c: Client, args: argparse.Namespace) -> Any:
    s = c.call("GET", "/api/state")
    if args.json:
        return s
    p = s.get("pause") or {}
    paused = f"PAUSED by {p.get('by')}: {p.get('reason')} (until {p.get('until') or 'resumed'})" if s["paused"] \
        else "active"
    return f"remediation: {paused}\nbreaker: {'OPEN' if s['breaker_open'] else 'closed'}\ndry_run: {s['dry_run']}"


def queue(c: Client, args: argparse.Namespace) -> Any:
    data = c.call("GET", "/api/queue")
    if args.json:
        return data
    if not data["items"]:
        return "nothing waits"
    rows = [("POS", "ID", "ALERT", "TARGET", "POOL", "WAITS FOR", "SINCE", "DETAIL")]
    rows += [(str(i["position"]), str(i["id"]), i["alertname"], i["target"] or "-", i["pool"] or "-", i["reason"],
              f"{i['since']} ({i['waited_seconds']:.0f} s)", i["detail"]) for i in data["items"]]
    widths = [max(len(r[k]) for r in rows) for k in range(7)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:7], widths, strict=True)) + "  " + r[7] for r in rows]
    return "\n".join([*lines, f"({data['total']} waiting)"])


COMMANDS: dict[str, tuple[Callable[[Client, argparse.Namespace], Any], str]] = {
    "incidents": (incidents, "list incidents (newest first)"),
    "show": (show, "one incident: its decision trace, actions and audit trail"),
    "pause": (pause, "pause remediation (admin): nothing acts until resumed or --for runs out"),
    "resume": (resume, "resume remediation (admin)"),
    "breaker-reset": (breaker_reset, "close the circuit breaker (admin)"),
    "state": (state, "pause, breaker and dry-run"),
    "queue": (queue, "what waits (budget, pause, breaker, ...), in the order it goes on, and since when"),
    "approve": (approve, "approve the step an incident waits for (admin): it goes on, every rail checked again"),
    "deny": (deny, "deny the step an incident waits for (admin): the incident is handed to people"),
}


def run(args: argparse.Namespace) -> int:
    fn = COMMANDS[args.command][0]
    try:
        client = Client(args.url, _token(args), args.timeout)
        out = fn(client, args)
    except ClientError as exc:
        print(f"remediator {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2) if not isinstance(out, str) else out)
    return 0


def add_parsers(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    for name, (_, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=formatter)
        p.add_argument("--url", default=os.environ.get("VIGIL_URL", DEFAULT_URL),
                       help="the remediator's base URL (env VIGIL_URL)")
        p.add_argument("--token-file", default=None,
                       help="file holding a bearer token (env VIGIL_TOKEN_FILE; or the token itself in VIGIL_TOKEN)")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
        p.add_argument("--json", action="store_true", help="print the API's JSON")
        if name == "incidents":
            p.add_argument("--status", default=None, help="only incidents in this status (e.g. acting, blocked)")
            p.add_argument("--alertname", default=None)
            p.add_argument("--limit", type=int, default=50, help="at most this many (1-500)")
        elif name == "show":
            p.add_argument("id", type=int, help="incident id")
        elif name in ("approve", "deny"):
            p.add_argument("id", type=int, help="incident id")
            p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
            p.add_argument("--step", default=None, help="the step, e.g. 'reboot_node(node-7)' (default: every step "
                           "the incident waits for)")
        elif name == "pause":
            p.add_argument("--reason", required=True, help="why (shown on the status page, kept in the audit)")
            p.add_argument("--for", dest="for_", default=None, metavar="DURATION",
                           help="end the pause by itself after this long (e.g. 2h); default: until resumed")
        p.set_defaults(func=run)
