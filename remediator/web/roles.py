"""Roles on the HTTP surface: intake (Alertmanager's webhook), read (the status page and GET
/api/*) and admin (pause, resume, breaker reset). Each request is tied to the credential that
proved it; `actor()` is what the audit trail records."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import g, request
from werkzeug.wrappers import Request, Response

from remediator.web.auth import identify
from remediator.web.context import Vigil, error, vigil

INSECURE = "anonymous (--insecure-no-auth)"


def _deny(status: int, err: str, detail: str):
    resp = error(status, err, detail)
    if status == 401:  # a browser asks for a username and password; API clients send a bearer token
        resp.headers["WWW-Authenticate"] = 'Basic realm="vigil", charset="UTF-8"'
    return resp


def cross_site(req: Request) -> str | None:
    """Why a browser marks this request as coming from another site, if it does: a web page the
    operator opens must not change anything with the credentials the browser cached for Vigil's
    status page. The CLI, curl and Alertmanager send neither header."""
    site = req.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site}"
    origin = req.headers.get("Origin")
    if origin is not None and (origin == "null" or _netloc(origin) != req.host.lower()):
        return f"Origin: {origin[:200]}"
    return None


def _netloc(origin: str) -> str | None:
    """The host[:port] an Origin names; None when it is not a URL (urlsplit raises on "http://[::1")."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return None


def authorize(v: Vigil, req: Request, role: str) -> Response | str:
    """Who may do this: the identity that proved `role`, or the refusal to send. Needs no Flask
    context, so the webhook (a plain WSGI handler) and the Flask routes share it."""
    if req.method not in ("GET", "HEAD", "OPTIONS") and (why := cross_site(req)) is not None:
        return _deny(403, "cross_site_request", f"refused: a browser sent this from another site ({why})")
    if v.insecure_no_auth:
        return INSECURE
    cred = identify(v.config.auth, req.headers.get("Authorization"))
    if cred is None:
        return _deny(401, "unauthorized", "missing or wrong credentials")
    if not cred.allows(role):
        return _deny(403, "forbidden", f"credential {cred.name!r} lacks the {role!r} role "
                                       f"(has: {', '.join(sorted(cred.roles))})")
    return cred.name


def may(v: Vigil, req: Request, role: str) -> bool:
    """Whether this request's credential has `role` (the status page shows admins their buttons)."""
    if v.insecure_no_auth:
        return True
    cred = identify(v.config.auth, req.headers.get("Authorization"))
    return cred is not None and cred.allows(role)


def require(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            who = authorize(vigil(), request, role)
            if not isinstance(who, str):
                return who
            g.identity = who
            return view(*args, **kwargs)
        return wrapped
    return decorator


def actor() -> str:
    """Who acted, for the audit trail: the credential's name and the client address."""
    return f"{getattr(g, 'identity', 'unknown')}@{request.remote_addr or '?'}"
