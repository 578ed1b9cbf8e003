"""Who is calling: a bearer token or basic auth, compared in constant time against every
configured credential (so timing does not tell which one nearly matched). Secrets from files are
the files' current contents (rotation without a restart, see remediator.credentials.SecretFile)."""

from __future__ import annotations

import base64
import binascii
import hmac

from remediator.credentials import Auth, Credential


def _eq(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _basic(value: str) -> tuple[str, str] | None:
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def identify(auth: Auth, header: str | None) -> Credential | None:
    """The credential the Authorization header proves, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    found = None
    if scheme == "bearer":
        for c in auth.credentials:
            if _eq(c.current_token(), value.strip()) and found is None:
                found = c
    elif scheme == "basic" and (pair := _basic(value)) is not None:
        user, password = pair
        for c in auth.credentials:
            # Both comparisons always run, so timing does not tell which part was wrong.
            ok_user, ok_pass = _eq(c.basic_username, user), _eq(c.current_password(), password)
            if ok_user and ok_pass and found is None:
                found = c
    return found


def authorized(auth: Auth, header: str | None, role: str = "intake") -> bool:
    cred = identify(auth, header)
    return cred is not None and cred.allows(role)
