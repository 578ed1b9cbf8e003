"""HOST:PORT parsing, one definition for every command line and config file."""

from __future__ import annotations

import argparse


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """("127.0.0.1", 9095) from "127.0.0.1:9095", ":9095" or "[::1]:9095". Raises ValueError."""
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or default_host, int(port)


def hostport_arg(value: str) -> tuple[str, int]:
    """parse_hostport for argparse's `type=`: a usage error (exit 2), not a traceback."""
    try:
        return parse_hostport(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
