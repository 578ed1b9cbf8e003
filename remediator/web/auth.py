"""Webhook and API credentials: a bearer token and/or basic auth, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from remediator.config import Auth


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def authorized(auth: Auth, header: str | None) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and auth.bearer_token:
        return _eq(value.strip(), auth.bearer_token)
    if scheme == "basic" and auth.basic_username and auth.basic_password:
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both comparisons always run, so timing does not tell which part was wrong.
        ok_user = _eq(user, auth.basic_username)
        ok_pass = _eq(password, auth.basic_password)
        return bool(sep) and ok_user and ok_pass
    return False
