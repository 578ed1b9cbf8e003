"""`service-exporter`: active health and inference probes of serving endpoints, for Prometheus.

    service-exporter --config services.yaml [--listen 127.0.0.1:9836]
    service-exporter check-config services.yaml     # every error at once, file:line; exit 2 if any"""

from __future__ import annotations

import argparse
import logging
import sys

from exporters import __version__
from exporters.http import serve_or_report, wait_for_termination
from exporters.service.config import ConfigError, load_config
from exporters.service.exporter import build
from exporters.service.server import make_app
from vigil_common import logs
from vigil_common.hostport import hostport_arg

log = logging.getLogger("service-exporter")


def check_config(argv: list[str]) -> int:
    from exporters.service.config import parse_config
    from vigil_common.checking import check_file

    p = argparse.ArgumentParser(prog="service-exporter check-config", formatter_class=logs.HelpFormatter,
                                description="validate a services.yaml: every error, with file, line and YAML path")
    p.add_argument("config")
    args = p.parse_args(argv)
    result = check_file(args.config, parse_config)
    for err in result.errors:
        print(f"error: {err}", file=sys.stderr)
    if not result.ok:
        n = len(result.errors)
        print(f"service-exporter: {args.config}: {n} error{'s' if n > 1 else ''}", file=sys.stderr)
        return 2
    c = result.config
    print(f"{args.config}: ok ({len(c.modules)} modules, {len(c.targets)} targets, {len(c.discovery)} discovered "
          "services)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check-config"]:
        return check_config(argv[1:])
    p = argparse.ArgumentParser(prog="service-exporter", description=__doc__, formatter_class=logs.HelpFormatter)
    logs.add_arguments(p, __version__)
    p.add_argument("--config", required=True, help="services.yaml")
    p.add_argument("--listen", type=hostport_arg, default=("127.0.0.1", 9836),
                   help="HOST:PORT (default: 127.0.0.1:9836)")
    args = logs.document_defaults(p).parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"service-exporter: {exc}", file=sys.stderr)
        print(f"service-exporter: every error: service-exporter check-config {args.config}", file=sys.stderr)
        return 2
    exp = build(config)
    # with static targets, a discovery that cannot start is retried by its thread (which logs why)
    if exp.discovery is not None and not exp.discovery.try_connect() and not config.targets:
        print(f"service-exporter: nothing to probe: no static targets, and discovery cannot start: "
              f"{exp.discovery.reason}", file=sys.stderr)
        return 2
    host, port = args.listen
    httpd = serve_or_report(make_app(exp), host, port, "service-exporter")
    if httpd is None:
        return 2
    exp.start()
    log.info("serving http://%s:%d/metrics: %d static targets, %d discovered services, interval %.1fs",
             host, httpd.server_port, len(config.targets), len(config.discovery), config.interval)
    wait_for_termination()
    exp.stop()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
