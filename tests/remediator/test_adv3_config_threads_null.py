"""Adversarial: `server.threads` is documented as an integer 1..256, but `threads:` left empty
(YAML null) passes the config check as None, and `serve` then crashes in make_server with a
TypeError from waitress (not the ConfigError naming the key that every other bad value gets)."""

from __future__ import annotations

from remediator.config import parse_config
from vigil_common.config import ConfigError


def test_null_server_threads_is_rejected_or_defaulted():
    try:
        config = parse_config({"server": {"threads": None}})
    except ConfigError as exc:
        assert "threads" in str(exc)
        return
    assert isinstance(config.server_threads, int) and 1 <= config.server_threads <= 256, config.server_threads


def test_null_server_threads_yaml_fails_check_or_serves(tmp_path):
    from remediator.web.server import make_server
    try:
        config = parse_config({"server": {"threads": None}})
    except ConfigError:
        return
    server = make_server(lambda env, start: [], host="127.0.0.1", port=0, max_body_bytes=1 << 20,
                         threads=config.server_threads)
    server.close()

