"""NVLink domains in PromQL, shared by the alert rules (alerts/generate.py) and the dashboards: a
node's domain is its GPUs' `gpu_fabric_info` cluster_uuid and clique_id joined by "." (GPU Feature
Discovery's nvidia.com/gpu.clique); a member is faulty while a GPU fault is pending or an NVSwitch
reported a fatal SXid within the window."""

from __future__ import annotations

from vigil_common.sxid import FATAL


def members(selector: str) -> str:
    """One series per (node, domain) of the nodes `selector` picks."""
    fabric = f"max by (node, cluster_uuid, clique_id) (gpu_fabric_info{{{selector}}})"
    return f'max by (node, domain) (label_join({fabric}, "domain", ".", "cluster_uuid", "clique_id"))'



def faulty_nodes(selector: str, window_seconds: int) -> str:
    return (f"max by (node) (gpu_fault_pending{{{selector}}} == 1) or max by (node) (time() - "
            f'gpu_nvswitch_sxid_last_timestamp_seconds{{{selector}, severity="{FATAL}"}} < {window_seconds})')


def faulty_members(selector: str, window_seconds: int) -> str:
    """Per domain: how many of its members are faulty (no series for a domain with none)."""
    return f"count by (domain) ({members(selector)} and on (node) ({faulty_nodes(selector, window_seconds)}))"
