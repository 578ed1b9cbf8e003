"""Adversarial: `--url` values the option's type (a string) allows. An unbalanced IPv6 bracket
raised ValueError inside urllib and printed a traceback with exit status 1; an out-of-range port
or a missing host went on to a connection attempt. Each must be one line naming --url and exit
status 2, before any request is made (the real CLI in a subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _cli(*args: str, env_token: str | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    if env_token is not None:
        env["VIGIL_TOKEN"] = env_token
    return subprocess.run([sys.executable, "-m", "remediator.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1:9095/", "http://127.0.0.1:99999", "http://",
                                 "https://:9095", "http://127.0.0.1:port"])
def test_a_malformed_url_is_a_message_and_exit_2(url):
    out = _cli("state", "--url", url)
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr, out.stderr
    assert "--url" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr


def test_a_token_http_cannot_carry_is_a_message_and_exit_2():
    out = _cli("state", "--url", "http://127.0.0.1:9", env_token="t\u20ac")
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr and "token" in out.stderr, out.stderr
