"""`auth:` of vigil.yaml: named credentials, each with roles.

    auth:
      credentials:
      - name: alertmanager          # the identity the audit trail records
        roles: [intake]             # intake: POST /webhook/alertmanager
        bearer_token_env: VIGIL_WEBHOOK_TOKEN
      - name: oncall
        roles: [admin]              # admin: pause, resume, breaker reset (and everything read does)
        bearer_token_file: /etc/vigil/admin-token
      - name: viewer
        roles: [read]               # read: the status page and GET /api/*
        basic_auth: {username: viewer, password_env: VIGIL_VIEWER_PASSWORD}

The older single-credential form (`bearer_token_file`/`bearer_token_env`/`basic_auth` directly
under `auth:`) keeps working as one credential named "default" with the roles intake and admin;
the remediator logs a warning at start naming `auth.credentials`. Secrets come from files or
environment variables, never from the config itself. A secret read from a file is read again when
the file changes (a Kubernetes Secret volume swaps its files on rotation), so rotating a token
needs no restart; until the new file is readable and non-empty, the last good value stays."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil_common.config import ConfigError, Section, collector, guarded, report

ROLES = ("intake", "read", "admin")
IMPLIED = {"admin": ("read",)}  # admin can do what read can
LEGACY_NAME = "default"
UNCHECKED = "<secret not checked>"
_SECRET_KEYS = ("bearer_token_file", "bearer_token_env", "basic_auth")
log = logging.getLogger(__name__)


class SecretFile:
    """A secret in a file, read again when the file's identity (inode, size, mtime) changes: one
    stat per check. A Secret volume updates by swapping a symlink, which stat follows."""

    def __init__(self, path: str, value: str) -> None:
        self.path, self._value = path, value
        self._lock = threading.Lock()
        self._sig = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> str:
        sig = self._stat()
        if sig is None or sig == self._sig:
            return self._value
        with self._lock:
            if sig != self._sig:
                self._reload(sig)
        return self._value

    def _reload(self, sig: tuple[int, int, int]) -> None:
        try:
            value = Path(self.path).read_text().strip()
        except OSError as exc:
            log.warning("secret %s changed but cannot be read (%s): keeping the previous value", self.path,
                        exc.strerror)
            return
        self._sig = sig
        if not value:
            log.warning("secret %s changed and is empty: keeping the previous value", self.path)
            return
        if value != self._value:
            log.warning("secret %s changed: using the new value", self.path)
        self._value = value


@dataclass(frozen=True)
class Credential:
    name: str
    roles: frozenset[str]
    bearer_token: str | None = None
    basic_username: str | None = None
    basic_password: str | None = None
    # Where a secret came from a file: read again when the file changes (see SecretFile).
    token_file: SecretFile | None = field(default=None, compare=False, repr=False)
    password_file: SecretFile | None = field(default=None, compare=False, repr=False)

    def current_token(self) -> str | None:
        return self.token_file.current() if self.token_file else self.bearer_token

    def current_password(self) -> str | None:
        return self.password_file.current() if self.password_file else self.basic_password

    def allows(self, role: str) -> bool:
        return role in self.roles or any(role in IMPLIED.get(r, ()) for r in self.roles)


@dataclass(frozen=True)
class Auth:
    credentials: tuple[Credential, ...] = ()
    legacy: bool = False  # the single-credential form: one secret for Alertmanager and people

    @property
    def configured(self) -> bool:
        return bool(self.credentials)

    def with_role(self, role: str) -> tuple[Credential, ...]:
        return tuple(c for c in self.credentials if c.allows(role))

    # The single-credential form's fields, for code written before roles.
    @property
    def bearer_token(self) -> str | None:
        return next((c.bearer_token for c in self.credentials if c.bearer_token), None)

    @property
    def basic_username(self) -> str | None:
        return next((c.basic_username for c in self.credentials if c.basic_username), None)

    @property
    def basic_password(self) -> str | None:
        return next((c.basic_password for c in self.credentials if c.basic_password), None)


def _note(message: str, at: tuple[Any, Any]) -> None:
    c = collector()
    if c is not None:
        c.notes.append(ConfigError(message, at=at))


def read_secret(sec: Section, file_key: str, env_key: str) -> str | None:
    """A secret from a file or an environment variable. While check-config runs without
    --check-secrets, a missing one is a note, not an error, and stands in as UNCHECKED."""
    path, env = sec.string(file_key, None), sec.string(env_key, None)
    if path and env:
        sec.fail(file_key, f"set {file_key!r} or {env_key!r}, not both")
    c = collector()
    lenient = c is not None and not c.check_secrets
    if path:
        try:
            value = Path(os.path.expanduser(path)).read_text().strip()
        except OSError as exc:
            value, problem = "", f"cannot read {path}: {exc.strerror}"
        else:
            problem = f"{path} is empty"
        if value:
            return value
        if lenient:
            _note(f"{sec.key(file_key)}: secret not checked here ({problem}); `serve` needs it "
                  "(--check-secrets makes this an error)", (sec.raw, file_key))
            return UNCHECKED
        sec.fail(file_key, problem)
        return None
    if env:
        value = os.environ.get(env, "").strip()
        if value:
            return value
        if lenient:
            _note(f"{sec.key(env_key)}: secret not checked here (environment variable {env} is not set); "
                  "`serve` needs it (--check-secrets makes this an error)", (sec.raw, env_key))
            return UNCHECKED
        sec.fail(env_key, f"environment variable {env} is not set or empty")
    return None


def _credential(raw: Any, where: str, *, name: str | None = None, roles: frozenset[str] | None = None) -> Credential:
    keys = _SECRET_KEYS if name else ("name", "roles", *_SECRET_KEYS)
    sec = Section(raw, where, keys)
    if name is None:
        name = sec.string("name", None, required=True) or "?"
        raw_roles = sec.get("roles")
        if not isinstance(raw_roles, list) or not raw_roles or not all(r in ROLES for r in raw_roles):
            sec.fail("roles", f"a non-empty list of {', '.join(ROLES)}, got {raw_roles!r}")
            raw_roles = []
        roles = frozenset(raw_roles)
    token = read_secret(sec, "bearer_token_file", "bearer_token_env")
    user = password = None
    basic = None
    if sec.get("basic_auth") is not None:
        basic = Section(sec.get("basic_auth"), f"{where}.basic_auth", ("username", "password_file", "password_env"))
        user = basic.string("username", None)
        password = read_secret(basic, "password_file", "password_env")
        if not user or not password:
            sec.fail("basic_auth", "needs 'username' and 'password_file' or 'password_env'")
    if not any(k in sec.raw for k in _SECRET_KEYS):
        sec.fail("name" if "name" in sec.raw else "bearer_token_file",
                 "a credential needs bearer_token_file, bearer_token_env or basic_auth")
    return Credential(name, roles or frozenset(), token, user, password,
                      _watched(sec, "bearer_token_file", token),
                      _watched(basic, "password_file", password) if basic is not None else None)


def _watched(sec: Section, file_key: str, value: str | None) -> SecretFile | None:
    """A SecretFile for a secret read from a file (not while check-config only notes it)."""
    path = sec.string(file_key, None)
    if not path or not value or value == UNCHECKED:
        return None
    return SecretFile(os.path.expanduser(path), value)


def parse_auth(raw: Any, where: str) -> Auth:
    sec = Section(raw, where, ("credentials", *_SECRET_KEYS))
    listed = sec.get("credentials")
    legacy = any(k in sec.raw for k in _SECRET_KEYS)
    if listed is not None and legacy:
        sec.fail("credentials", f"use either 'credentials' or the single-credential keys ({', '.join(_SECRET_KEYS)})"
                 ", not both")
        return Auth()
    if legacy:
        cred = _credential(sec.raw, where, name=LEGACY_NAME,
                           roles=frozenset(("intake", "admin")))
        return Auth((cred,), legacy=True)
    if listed is None:
        return Auth()
    if not isinstance(listed, list) or not listed:
        sec.fail("credentials", "a non-empty list of credentials, each with name, roles and a secret")
        return Auth()
    creds = [guarded(lambda i=i, c=c: _credential(c, f"{where}.credentials[{i}]"), at=(listed, i))
             for i, c in enumerate(listed)]
    names = [c.name for c in creds if c]
    for dupe in sorted({n for n in names if names.count(n) > 1}):
        report(ConfigError(f"{sec.key('credentials')}: name {dupe!r} used twice", at=(sec.raw, "credentials")))
    return Auth(tuple(c for c in creds if c))
