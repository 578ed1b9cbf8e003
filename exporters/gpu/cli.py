"""`gpu-exporter`: NVML (or simulated) GPU metrics for Prometheus."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from exporters import __version__
from exporters.gpu.attribution import KUBELET_SOCKET
from exporters.gpu.exporter import FaultStateConfig, PodResourcesConfig, build, load_backend
from exporters.gpu.fastpath import DEFAULT_EVENTS, PushConfig
from exporters.gpu.faults import BOOT_ID_PATH, DEFAULT_STATE_DIR
from exporters.gpu.kernel_log import KernelLogConfig
from exporters.gpu.kmsg import is_char_device
from exporters.gpu.server import make_app
from exporters.http import serve_or_report, wait_for_termination
from vigil_common import logs
from vigil_common.hostport import hostport_arg

log = logging.getLogger("gpu-exporter")
DEFAULT_KMSG = "/dev/kmsg"


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def _duration(value: str) -> float:
    from vigil_common.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _read_secret(path: str, flag: str) -> str:
    try:
        with open(path) as f:
            value = f.read().strip()
    except OSError as exc:
        raise SystemExit(f"gpu-exporter: {flag}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise SystemExit(f"gpu-exporter: {flag}: {path} is empty")
    return value


def fabric_arg(text: str) -> tuple[str, int]:
    """<clusterUuid>.<cliqueId>, e.g. 7f0c3a52-5d3e-4c1b-9a0e-1f2e3d4c5b6a.1."""
    cluster, _, clique = text.rpartition(".")
    try:
        return str(uuid.UUID(cluster)), int(clique)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected <clusterUuid>.<cliqueId>, got {text!r}") from exc


def kernel_log_path(args: argparse.Namespace) -> str | None:
    """--kernel-log PATH; '' turns it off; by default /dev/kmsg where it is readable, and for the
    simulated backend a file its injected faults are logged to."""
    if args.kernel_log is not None:
        return args.kernel_log or None
    if args.backend == "simulated":
        where = tempfile.mkdtemp(prefix="vigil-simulated-")
        atexit.register(shutil.rmtree, where, True)
        return str(Path(where) / "kmsg")
    try:
        os.close(os.open(DEFAULT_KMSG, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as exc:
        log.info("kernel log off: cannot read %s (%s); XIDs come from NVML only", DEFAULT_KMSG, exc.strerror)
        return None
    return DEFAULT_KMSG


def state_dir(args: argparse.Namespace) -> str | None:
    """--state-dir DIR; '' keeps faults in memory; by default the hostPath, or for the simulated
    backend a directory of its own (simulated nodes on one machine must not share one file)."""
    if args.state_dir is not None:
        return args.state_dir or None
    if args.backend == "simulated":
        where = tempfile.mkdtemp(prefix="vigil-simulated-state-")
        atexit.register(shutil.rmtree, where, True)
        return where
    return DEFAULT_STATE_DIR


def push_config(args: argparse.Namespace, p: argparse.ArgumentParser) -> PushConfig | None:
    if not args.alertmanager_url:
        return None
    node = args.node_name or os.environ.get("NODE_NAME")
    if not node:
        p.error("--alertmanager-url needs the node name: --node-name or the NODE_NAME environment variable")
    labels = {}
    for kv in args.alert_label:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            p.error(f"--alert-label expects KEY=VALUE, got {kv!r}")
        labels[k] = v
    events = tuple(e.strip() for e in args.alert_events.split(",") if e.strip())
    unknown = [e for e in events if e not in DEFAULT_EVENTS]
    if unknown:
        p.error(f"--alert-events: unknown event {unknown[0]!r} (known: {', '.join(DEFAULT_EVENTS)})")
    basic = None
    if args.alertmanager_basic_auth_user:
        if not args.alertmanager_basic_auth_password_file:
            p.error("--alertmanager-basic-auth-user needs --alertmanager-basic-auth-password-file")
        basic = (args.alertmanager_basic_auth_user,
                 _read_secret(args.alertmanager_basic_auth_password_file, "--alertmanager-basic-auth-password-file"))
    token = (_read_secret(args.alertmanager_bearer_token_file, "--alertmanager-bearer-token-file")
             if args.alertmanager_bearer_token_file else None)
    return PushConfig(urls=args.alertmanager_url, node=node, events=events, extra_labels=labels,
                      xid_window=args.alert_xid_window, resend=args.alert_resend, bearer_token=token,
                      basic_auth=basic, ca_file=args.alertmanager_ca_file)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu-exporter", description=__doc__, formatter_class=logs.HelpFormatter)
    logs.add_arguments(p, __version__)
    p.add_argument("--listen", type=hostport_arg, default=("127.0.0.1", 9835),
                   help="HOST:PORT to serve /metrics on (default 127.0.0.1:9835)")
    p.add_argument("--backend", choices=("nvml", "simulated"), default="nvml")
    p.add_argument("--simulated-gpus", type=positive_int, default=8,
                   help="GPUs of the simulated backend (default 8)")
    p.add_argument("--simulated-fabric", type=fabric_arg, default=None, metavar="CLUSTER_UUID.CLIQUE_ID",
                   help="the simulated GPUs' NVLink partition, as GPU Feature Discovery's nvidia.com/gpu.clique "
                        "(default: none, as PCIe GPUs)")
    p.add_argument("--collect-timeout", type=float, default=5.0,
                   help="upper bound in seconds on one NVML collection (default 5)")
    p.add_argument("--min-interval", type=float, default=0.0,
                   help="scrapes within this many seconds of a collection share it (default 0: always fresh)")
    p.add_argument("--nvlink-interval", type=float, default=10.0,
                   help="seconds between reads of the NVLink error counters, 4 NVML calls a link (default 10)")
    p.add_argument("--fail-without-gpu", action="store_true",
                   help="exit 1 if NVML cannot be initialised or sees no GPU, instead of serving nvml_up 0")
    p.add_argument("--kernel-log", default=None, metavar="PATH",
                   help="read NVRM Xid and NVSwitch SXid lines from this kernel log (/dev/kmsg or a file); '' "
                        f"turns it off (default: {DEFAULT_KMSG} if readable; a simulated log with --backend simulated)")
    p.add_argument("--state-dir", default=None, metavar="DIR",
                   help="keep pending GPU faults (XIDs that need action, lost GPUs) in DIR/faults.json, so they "
                        "outlive an exporter restart until a reboot or a GPU reset; '' keeps them in memory only "
                        f"(default {DEFAULT_STATE_DIR}, a hostPath in the DaemonSet; with --backend simulated a "
                        "directory of its own, removed at exit)")
    p.add_argument("--boot-id-file", default=BOOT_ID_PATH, metavar="PATH",
                   help=f"the node's boot ID, which keys the state file (default {BOOT_ID_PATH})")
    p.add_argument("--pod-resources-socket", default=None, metavar="PATH",
                   help="export gpu_allocation_info from the kubelet's pod-resources API on this socket (off by "
                        f"default; the DaemonSet passes {KUBELET_SOCKET})")
    p.add_argument("--pod-resources-interval", type=_duration, default=10.0,
                   help="how often the pod-resources API is read (default 10s)")
    fp = p.add_argument_group("event fast path (push critical GPU events to Alertmanager)")
    fp.add_argument("--alertmanager-url", action="append", default=[],
                    help="an Alertmanager to push to; repeat for every replica (enables the fast path)")
    fp.add_argument("--node-name", default=None, help="this node's name (default: $NODE_NAME)")
    fp.add_argument("--alert-events", default=",".join(DEFAULT_EVENTS),
                    help=f"which events become alerts (default: {','.join(DEFAULT_EVENTS)})")
    fp.add_argument("--alert-label", action="append", default=[], metavar="KEY=VALUE",
                    help="extra label on pushed alerts: Prometheus' external labels, so both alerts match")
    fp.add_argument("--alert-xid-window", type=_duration, default=600.0,
                    help="how long an XID alert lasts after the event at least; longer while the fault is "
                         "pending, as the rule (default 10m)")
    fp.add_argument("--alert-resend", type=_duration, default=15.0, help="re-send interval (default 15s)")
    fp.add_argument("--alertmanager-bearer-token-file", default=None)
    fp.add_argument("--alertmanager-basic-auth-user", default=None)
    fp.add_argument("--alertmanager-basic-auth-password-file", default=None)
    fp.add_argument("--alertmanager-ca-file", default=None)
    return logs.document_defaults(p)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)  # unknown flags: usage and exit 2
    push = push_config(args, p)
    logs.setup(args.log_level, args.log_format)
    kmsg = kernel_log_path(args)
    simulated_log = kmsg if args.backend == "simulated" and kmsg and not is_char_device(kmsg) else None
    exporter = build(load_backend(args.backend, args.simulated_gpus, simulated_log, args.simulated_fabric),
                     collect_timeout=args.collect_timeout, min_interval=args.min_interval,
                     nvlink_interval=args.nvlink_interval, push=push,
                     kernel_log=KernelLogConfig(kmsg) if kmsg else None,
                     pod_resources=(PodResourcesConfig(args.pod_resources_socket, args.pod_resources_interval)
                                    if args.pod_resources_socket else None),
                     fault_state=FaultStateConfig(state_dir(args), args.boot_id_file))
    exporter.start()
    if args.fail_without_gpu and (not exporter.session.up or exporter.session.visible == 0):
        log.error("no usable GPU (NVML up=%s, GPUs=%d) and --fail-without-gpu is set",
                  exporter.session.up, exporter.session.visible)
        return 1
    host, port = args.listen
    httpd = serve_or_report(make_app(exporter), host, port, "gpu-exporter")
    if httpd is None:
        return 2
    where = f"http://{host}:{httpd.server_port}"
    log.info("serving %s/metrics (backend %s, %d GPU(s))", where, args.backend, exporter.session.visible)
    if push is not None:
        log.info("fast path: pushing %s to %s as node %s", ",".join(push.events), ", ".join(push.urls), push.node)
    if kmsg:
        log.info("kernel log: %s", kmsg)
    if exporter.simulated is not None:
        log.info("inject faults: curl -XPOST %s/simulate -d '{\"gpu\":3,\"fault\":\"xid\",\"xid\":79}'", where)
    wait_for_termination()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
