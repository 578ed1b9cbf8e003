"""`make cluster` / `make cluster-down`: a persistent local cluster for the demo and for people.

    python -m tests.k8s up [--nodes 4] [--dir .local]   # kubeconfig at <dir>/kubeconfig
    python -m tests.k8s down [--dir .local]             # stops every process `up` started, removes its files

Both can be run any number of times, in any order. `up` reuses a running cluster; what a dead
one left (a killed shell, a reboot, SIGKILL: stale pids, etcd-data) is removed and a fresh
cluster started, with one line saying so. `down` removes those leftovers too.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from kubernetes import client

from tests.k8s import bins
from tests.k8s.controlplane import ControlPlane, ControlPlaneError, add_gpu_nodes, start, wait_until

SAMPLE_NS = "inference"
SAMPLE_REPLICAS = 4


def _create(fn, *args) -> bool:
    """Create an object; one that already exists (409) is fine. True when it was created now."""
    try:
        fn(*args)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        return False
    return True


def _sample_workload(api) -> bool:
    """An inference Deployment on the GPU nodes behind a Service (the demo's victim). True if created now."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    _create(core.create_namespace, {"metadata": {"name": SAMPLE_NS}})
    labels = {"app": "llm", "vigil.io/serving": "true"}
    created = _create(apps.create_namespaced_deployment, SAMPLE_NS, {
        "metadata": {"name": "llm", "labels": labels},
        "spec": {"replicas": SAMPLE_REPLICAS, "selector": {"matchLabels": {"app": "llm"}},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 0,
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                    "whenUnsatisfiable": "ScheduleAnyway",
                                                    "labelSelector": {"matchLabels": {"app": "llm"}}}],
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                     "ports": [{"containerPort": 8000, "name": "http"}],
                                     "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}},
    })
    _create(core.create_namespaced_service, SAMPLE_NS, {
        "metadata": {"name": "llm"},
        "spec": {"selector": {"app": "llm", "vigil.io/serving": "true"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })
    return created


def _leftovers(workdir: Path, cp: ControlPlane | None) -> str:
    """What a cluster that is not (fully) running left behind, in words; "" when nothing."""
    if cp is not None:
        dead = [p.name for p in cp.procs if not p.alive()]
        return f"a cluster whose {', '.join(dead)} {'is' if len(dead) == 1 else 'are'} no longer running"
    if workdir.exists() and any(workdir.iterdir()):
        names = sorted(p.name for p in workdir.iterdir())
        return f"files of a stopped cluster ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
    return ""


def _remove(root: Path, cp: ControlPlane | None) -> None:
    """Stop what still runs of `cp` (only processes it started, checked by identity), then delete its files."""
    if cp is not None:
        cp.stop()
    shutil.rmtree(root / "cluster", ignore_errors=True)
    (root / "kubeconfig").unlink(missing_ok=True)


def _all_running(cp: ControlPlane | None) -> bool:
    return cp is not None and bool(cp.procs) and all(p.alive() for p in cp.procs)


def _populate(cp: ControlPlane, nodes: int, *, fresh: bool) -> None:
    """GPU nodes Ready and the sample workload; objects that exist already are kept."""
    api = cp.api_client()
    names = [f"gpu-node-{i}" for i in range(nodes)]
    add_gpu_nodes(api, names, exist_ok=True)
    core = client.CoreV1Api(api)

    def ready() -> bool:
        return all(any(c.type == "Ready" and c.status == "True" for c in core.read_node(n).status.conditions or [])
                   for n in names)

    wait_until(ready, 60, what="GPU nodes Ready")
    if _sample_workload(api) or fresh:
        wait_until(lambda: sum(p.status.phase == "Running" for p in core.list_namespaced_pod(SAMPLE_NS).items)
                   >= SAMPLE_REPLICAS, 60, what="sample pods Running")


def up(root: Path, nodes: int) -> int:
    workdir, kubeconfig = root / "cluster", root / "kubeconfig"
    existing = ControlPlane.load(workdir)
    if _all_running(existing):
        print(f"cluster already running: reusing it (API server {existing.server})")
        try:
            _populate(existing, nodes, fresh=False)
        except (client.ApiException, TimeoutError, OSError) as exc:
            print(f"cluster: the running cluster does not answer as it should: {exc}; "
                  f"`make cluster-down` removes it", file=sys.stderr)
            return 1
        print(f"  kubectl --kubeconfig {kubeconfig} get nodes")
        return 0
    left = _leftovers(workdir, existing)
    if left:
        _remove(root, existing)
        print(f"cluster: found {left} in {workdir}; removed it, starting a fresh cluster")
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    try:
        cp = start(workdir.resolve(), "cluster", kubeconfig=kubeconfig.resolve())
    except (bins.MissingBinary, ControlPlaneError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    _populate(cp, nodes, fresh=True)
    print(f"cluster up in {time.monotonic() - started:.1f} s: {nodes} simulated GPU nodes (8 GPUs each), "
          f"Deployment {SAMPLE_NS}/llm Running")
    print(f"  kubectl --kubeconfig {kubeconfig} get nodes -L topology.kubernetes.io/zone,vigil.io/pool")
    print(f"  API server {cp.server}; logs in {workdir}/; stop with `make cluster-down`")
    return 0


def down(root: Path) -> int:
    workdir = root / "cluster"
    cp = ControlPlane.load(workdir)
    running = [p.name for p in cp.procs if p.alive()] if cp else []
    left = "" if running else _leftovers(workdir, cp)
    _remove(root, cp)
    still = [p.name for p in cp.procs if p.alive()] if cp else []
    if still:
        print(f"still running: {', '.join(still)}", file=sys.stderr)
        return 1
    if running:
        print(f"stopped {', '.join(running)}; removed {workdir}")
    elif left:
        print(f"no cluster process was running; removed {left} in {workdir}")
    else:
        print("no cluster running")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.k8s", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=Path(".local"),
                        help="where the cluster's files live (default: .local)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", parents=[common])
    u.add_argument("--nodes", type=int, default=4)
    sub.add_parser("down", parents=[common])
    args = ap.parse_args(argv)
    return up(args.dir, args.nodes) if args.cmd == "up" else down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
