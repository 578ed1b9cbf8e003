"""`gpu-exporter`: NVML (or simulated) GPU metrics for Prometheus."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from exporters.gpu.exporter import build, load_backend
from exporters.gpu.server import make_app, serve

log = logging.getLogger("gpu-exporter")


def listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu-exporter", description=__doc__)
    p.add_argument("--listen", type=listen_address, default=("127.0.0.1", 9835),
                   help="HOST:PORT to serve /metrics on (default 127.0.0.1:9835)")
    p.add_argument("--backend", choices=("nvml", "simulated"), default="nvml")
    p.add_argument("--simulated-gpus", type=positive_int, default=8,
                   help="GPUs of the simulated backend (default 8)")
    p.add_argument("--collect-timeout", type=float, default=5.0,
                   help="upper bound in seconds on one NVML collection (default 5)")
    p.add_argument("--min-interval", type=float, default=0.0,
                   help="scrapes within this many seconds of a collection share it (default 0: always fresh)")
    p.add_argument("--nvlink-interval", type=float, default=10.0,
                   help="seconds between reads of the NVLink error counters, 4 NVML calls a link (default 10)")
    p.add_argument("--fail-without-gpu", action="store_true",
                   help="exit 1 if NVML cannot be initialised or sees no GPU, instead of serving nvml_up 0")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # unknown flags: usage and exit 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exporter = build(load_backend(args.backend, args.simulated_gpus), collect_timeout=args.collect_timeout,
                     min_interval=args.min_interval, nvlink_interval=args.nvlink_interval)
    exporter.start()
    if args.fail_without_gpu and (not exporter.session.up or exporter.session.visible == 0):
        log.error("no usable GPU (NVML up=%s, GPUs=%d) and --fail-without-gpu is set",
                  exporter.session.up, exporter.session.visible)
        return 1
    host, port = args.listen
    try:
        httpd = serve(make_app(exporter), host, port)
    except OSError as exc:
        print(f"gpu-exporter: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    where = f"http://{host}:{httpd.server_port}"
    log.info("serving %s/metrics (backend %s, %d GPU(s))", where, args.backend, exporter.session.visible)
    if exporter.simulated is not None:
        log.info("inject faults: curl -XPOST %s/simulate -d '{\"gpu\":3,\"fault\":\"xid\",\"xid\":79}'", where)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
