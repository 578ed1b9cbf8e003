"""`make cluster` / `make cluster-down`: a persistent local cluster for the demo and for people.

    python -m tests.k8s up [--nodes 4]    # kubeconfig at .local/kubeconfig
    python -m tests.k8s down              # stops every process `up` started
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kubernetes import client

from tests.k8s import bins
from tests.k8s.controlplane import ControlPlane, ControlPlaneError, add_gpu_nodes, start, wait_until

WORKDIR = Path(".local/cluster")
KUBECONFIG = Path(".local/kubeconfig")
SAMPLE_NS = "inference"


def _sample_workload(api) -> None:
    """An inference Deployment on the GPU nodes behind a Service (the demo's victim)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": SAMPLE_NS}})
    labels = {"app": "llm", "vigil.io/serving": "true"}
    apps.create_namespaced_deployment(SAMPLE_NS, {
        "metadata": {"name": "llm", "labels": labels},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "llm"}},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 0,
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                    "whenUnsatisfiable": "ScheduleAnyway",
                                                    "labelSelector": {"matchLabels": {"app": "llm"}}}],
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                     "ports": [{"containerPort": 8000, "name": "http"}],
                                     "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}},
    })
    core.create_namespaced_service(SAMPLE_NS, {
        "metadata": {"name": "llm"},
        "spec": {"selector": {"app": "llm", "vigil.io/serving": "true"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })


def up(nodes: int) -> int:
    existing = ControlPlane.load(WORKDIR)
    if existing and all(p.alive() for p in existing.procs):
        print(f"cluster already running: kubectl --kubeconfig {KUBECONFIG} get nodes")
        return 0
    if existing:
        existing.stop()
    started = time.monotonic()
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    try:
        cp = start(WORKDIR.resolve(), "cluster", kubeconfig=KUBECONFIG.resolve())
    except (bins.MissingBinary, ControlPlaneError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    api = cp.api_client()
    names = [f"gpu-node-{i}" for i in range(nodes)]
    add_gpu_nodes(api, names)
    core = client.CoreV1Api(api)

    def ready() -> bool:
        return all(any(c.type == "Ready" and c.status == "True" for c in core.read_node(n).status.conditions or [])
                   for n in names)

    wait_until(ready, 60, what="GPU nodes Ready")
    _sample_workload(api)
    wait_until(lambda: sum(p.status.phase == "Running" for p in core.list_namespaced_pod(SAMPLE_NS).items) == 4,
               60, what="sample pods Running")
    print(f"cluster up in {time.monotonic() - started:.1f} s: {nodes} simulated GPU nodes (8 GPUs each), "
          f"Deployment {SAMPLE_NS}/llm Running")
    print(f"  kubectl --kubeconfig {KUBECONFIG} get nodes -L topology.kubernetes.io/zone,vigil.io/pool")
    print(f"  API server {cp.server}; logs in {WORKDIR}/; stop with `make cluster-down`")
    return 0


def down() -> int:
    cp = ControlPlane.load(WORKDIR)
    if cp is None:
        print("no cluster running")
        return 0
    cp.stop()
    left = [p.name for p in cp.procs if p.alive()]
    if left:
        print(f"still running: {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"stopped {', '.join(p.name for p in cp.procs)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.k8s", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--nodes", type=int, default=4)
    sub.add_parser("down")
    args = ap.parse_args(argv)
    return up(args.nodes) if args.cmd == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
