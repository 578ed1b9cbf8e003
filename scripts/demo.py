"""`make demo`: Vigil end to end on this machine. A local Kubernetes cluster with simulated 8-GPU
nodes runs an inference Deployment; one simulated GPU exporter per node, Prometheus with Vigil's
rules, Alertmanager with Vigil's routing and the remediator acting on the cluster. Two GPU faults
(XID 79, "fallen off the bus"): one seen through the exporter's fast path, one only through the
pull path. For each: injected -> scraped -> alert firing -> webhook received -> node cordoned ->
drained (pods moved) -> rebooted (a simulated node agent acts on the reboot Job and clears the
exporter's fault) -> validated -> uncordoned, with seconds per hop and the floor implied by the
configured intervals. Then a storm larger than the disruption budget drains through the queue
(printed as it empties), one fault raising two alerts gets one ladder, and a node that keeps
failing ends as an RMA candidate.
Then a service fault: zone A's model servers slow down, the latency SLO burn alert fires, and
the remediator moves the HTTPRoute's weight to zone B (restored when the alert resolves).

    make demo                   # run the scenario, then tear everything down
    make demo DEMO_ARGS=--keep  # leave it all running to explore (Ctrl-C stops it)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from kubernetes import client

from tests.pipeline import Pipeline, Timeline


def pods_by_node(p: Pipeline) -> dict[str, int]:
    core = client.CoreV1Api(p.cp.api_client())
    out = dict.fromkeys(p.node_names, 0)
    for pod in core.list_namespaced_pod("inference").items:
        if pod.spec.node_name and not pod.metadata.deletion_timestamp and pod.status.phase == "Running":
            out[pod.spec.node_name] += 1
    return out


def show_cluster(p: Pipeline) -> None:
    core = client.CoreV1Api(p.cp.api_client())
    pods = pods_by_node(p)
    for n in core.list_node().items:
        state = "SchedulingDisabled" if n.spec.unschedulable else "Ready"
        print(f"   {n.metadata.name:12} {state:20} zone={n.metadata.labels['topology.kubernetes.io/zone']:7} "
              f"gpus={n.status.capacity['nvidia.com/gpu']} inference pods={pods.get(n.metadata.name, 0)}")


STEP_NAMES = {"reboot_node": "rebooted", "validate_node": "validated", "uncordon_node": "uncordoned",
              "reboot_node blocked": "refused"}


def print_hops(tl: Timeline, hops: list[tuple[str, float | None]]) -> None:
    """Hops in the order they happened (the fast path's webhook comes before the scrape); unseen ones last."""
    seen = sorted(((t, name) for name, t in hops if t is not None))
    for t, name in seen:
        print(f"   {name:10} {tl.hop(t).strip()}")
    for name, t in hops:
        if t is None:
            print(f"   {name:10} not seen")


def show_timeline(tl: Timeline, floor: str | None) -> None:
    print(f"   {'injected':10} 0.00 s   (POST /simulate on {tl.node}'s exporter)")
    later = [(STEP_NAMES.get(step, step), t) for step, t in tl.steps.items() if step not in ("cordon_node",
                                                                                            "drain_node")]
    print_hops(tl, [("scraped", tl.scraped), ("firing", tl.firing), ("webhook", tl.received),
                    ("cordoned", tl.acted), ("drained", tl.drained), *later])
    if floor:
        print(f"   floor to the webhook: {floor}")


def repeat_offender(p: Pipeline, node: str) -> bool:
    """Three faults on one node, on three GPUs: two repairs, then no more (max_repairs 2 here)."""
    core = client.CoreV1Api(p.cp.api_client())
    for i, gpu in enumerate((1, 2, 5), 1):
        print(f"\n== {node}, fault {i}: XID 79 on GPU {gpu}")
        show_timeline(p.xid_timeline(node, gpu=gpu), None)
    n = core.read_node(node)
    label = (n.metadata.labels or {}).get("vigil.io/rma-candidate")
    print(f"   {node}: unschedulable={bool(n.spec.unschedulable)} vigil.io/rma-candidate={label}")
    print(f"   why: {(n.metadata.annotations or {}).get('vigil.io/rma-reason')}")
    print("   (the shipped alert VigilRepairExhausted fires on vigil_repairs_exhausted_total)")
    return label == "true" and bool(n.spec.unschedulable)


def _queue(p: Pipeline) -> list[dict]:
    r = requests.get(f"{p.remediator_url}/api/queue", headers={"Authorization": f"Bearer {p.token}"}, timeout=10)
    return r.json()["items"]


def _out(p: Pipeline, nodes: list[str]) -> list[str]:
    core = client.CoreV1Api(p.cp.api_client())
    return [n for n in nodes if core.read_node(n).spec.unschedulable]


def storm(p: Pipeline, nodes: list[str], timeout: float = 300) -> bool:
    """XID 79 on more nodes than the budget allows out: the ones seen only through the pull path first
    (their alerts take a scrape and an evaluation), then, once those are out, the fast-path ones, so
    that they arrive while the budget is used up: they wait in the queue and go on, in order, as
    repaired nodes return. Prints the queue whenever it changes."""
    started = time.monotonic()
    gpus = dict(zip(nodes, (6, 7, 0, 4), strict=False))  # GPUs not repaired before (simulated UUIDs repeat)
    pull = [n for n in nodes if p.node_names.index(n) >= p.fast_nodes]
    for node in pull:
        p.inject(node, {"gpu": gpus[node], "fault": "xid", "xid": 79})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_out(p, pull)) < min(len(pull), p.nodes // 2):
        time.sleep(0.1)
    for node in nodes:
        if node not in pull:
            p.inject(node, {"gpu": gpus[node], "fault": "xid", "xid": 79})
    seen, peak, last = set(), 0, None
    while time.monotonic() - started < timeout:
        out, queue = _out(p, nodes), _queue(p)
        peak = max(peak, len(out))
        line = (f"out of service: {', '.join(out) or '-'}; waiting: "
                + (", ".join(f"#{q['position']} {q['target']} ({q['reason']})" for q in queue) or "-"))
        if line != last:
            print(f"   {time.monotonic() - started:6.1f} s  {line}")
            last = line
        seen |= set(out)
        if seen >= set(nodes) and not out and not queue:
            print(f"   all {len(nodes)} repaired and back in {time.monotonic() - started:.1f} s; at most {peak} out at "
                  f"once (budget {p.nodes // 2})")
            return peak <= p.nodes // 2
        time.sleep(0.5)
    print(f"   not drained within {timeout:.0f} s")
    return False


def two_alerts(p: Pipeline, node: str, timeout: float = 180) -> bool:
    """XID 79 and the GPU falling off the bus on one GPU: two alerts (GpuXidCritical, GpuLost), one
    ladder, one reboot."""
    batch = client.BatchV1Api(p.cp.api_client())

    def reboots() -> int:
        return len([j for j in batch.list_namespaced_job("vigil-repair").items
                    if j.spec.template.spec.node_name == node and "reboot" in j.metadata.name])
    before, known = reboots(), {i["id"] for i in p.incidents()}
    p.inject(node, {"gpu": 4, "fault": "xid", "xid": 79})
    p.inject(node, {"gpu": 4, "fault": "lost"})

    def new() -> list[dict]:
        return [i for i in p.incidents() if i["id"] not in known and i["labels"].get("node") == node]
    deadline = time.monotonic() + timeout
    settled_at = None
    while time.monotonic() < deadline:  # repaired (one reboot), every alert of it resolved, a grace for stragglers
        mine = new()
        done = reboots() > before and mine and all(i["alert_status"] == "resolved" for i in mine)
        settled_at = (settled_at or time.monotonic()) if done else None
        if settled_at and (len({i["alertname"] for i in mine}) == 2 or time.monotonic() - settled_at > 20):
            break
        time.sleep(0.5)
    latest = new()
    if len({i["alertname"] for i in latest}) < 2:
        print("   (the repair cleared the fault before the second alert fired: it never reached Vigil)")
    for i in latest:
        print(f"   incident {i['id']} {i['alertname']}: {i['status']}"
              + (f" ({i['reason']}: {i['detail'][:100]})" if i["reason"] else ""))
    n = reboots() - before
    print(f"   reboot Jobs for {node}: {n} (one fault, one ladder)")
    return n == 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep everything running after the scenario")
    args = ap.parse_args()
    p = Pipeline(Path(tempfile.mkdtemp(prefix="vigil-demo-")) / "demo", max_repairs=2)
    started = time.monotonic()
    try:
        print("== starting: local Kubernetes (etcd, apiserver, controller-manager, scheduler, kwok), 4 simulated "
              "8-GPU nodes,\n   4 simulated GPU exporters, Prometheus, Alertmanager, the remediator")
        p.start()
        print(f"   up in {time.monotonic() - started:.1f} s")
        show_cluster(p)
        floors = p.floors()
        print("\n== fault 1: XID 79 on gpu-node-0 GPU 3, whose exporter pushes critical events (fast path)")
        fast = p.xid_timeline("gpu-node-0")
        show_timeline(fast, floors["fast"])
        print("\n== fault 2: XID 79 on gpu-node-2 GPU 3, seen only through the pull path (scrape -> rule)")
        pull = p.xid_timeline("gpu-node-2")
        show_timeline(pull, floors["pull"])
        print("\n== the cluster now (both nodes were cordoned, drained, rebooted, validated and returned):")
        show_cluster(p)
        print(f"\n== a storm: XID 79 on gpu-node-0, -2 and -3 at once; the budget allows {p.nodes // 2} out, the "
              "third waits in the queue")
        drained = storm(p, ["gpu-node-0", "gpu-node-2", "gpu-node-3"])
        print("\n== one fault, two alerts: XID 79 and GPU 4 off the bus on gpu-node-3 (GpuXidCritical + GpuLost)")
        one_ladder = two_alerts(p, "gpu-node-3")
        print("\n== a repeat offender: gpu-node-1 keeps failing (repair.repeat_offenders.max_repairs: 2 here)")
        rma = repeat_offender(p, "gpu-node-1")
        print(f"\n== a service fault: zone A's model servers slow down (3 s to the first token); HTTPRoute "
              f"inference/llm weights {p.route_weights()}")
        lat = p.latency_timeline()
        print(f"   {'injected':10} 0.00 s   (zone A's inference server answers slowly)")
        print_hops(lat, [("probed", lat.scraped), ("firing", lat.firing), ("webhook", lat.received),
                         ("shifted", lat.acted)])
        print(f"   HTTPRoute weights now {p.route_weights()} (restored when the burn alert resolves)")
        print("   floor: a slow probe (3 s) + a scrape (5 s) + the SLO recording rules (30 s) + evaluation (5 s) "
              "+ group_wait (1 s)")
        print("\n   managed auto-repair for comparison: EKS acts on GPU conditions after 10 min, GKE after ~10 min "
              "NotReady")
        ok = fast.acted is not None and pull.acted is not None and lat.acted is not None and rma and drained \
            and one_ladder
        if not args.keep:  # the URLs would be dead by the time anyone reads them
            print("\n== tearing down (`make demo DEMO_ARGS=--keep` leaves everything running to explore)")
            return 0 if ok else 1
        print(f"\n== look at:\n   Prometheus    {p.stack.prometheus_url}/alerts\n   Alertmanager  "
              f"{p.stack.alertmanager_url}\n   remediator    {p.remediator_url}/api/incidents "
              f"(Authorization: Bearer {p.token})\n   kubectl --kubeconfig {p.cp.kubeconfig} get nodes")
        print("   running; Ctrl-C to stop")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        p.stop()
        print("== stopped everything")


if __name__ == "__main__":
    sys.exit(main())
