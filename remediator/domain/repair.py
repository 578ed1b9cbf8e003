"""Repair settings and the repeat-offender rule: pure data and arithmetic, no I/O.

A repair (`reset_gpu`, `reboot_node`, `replace_node`) changes hardware state; one that keeps being
needed on the same node or GPU means the hardware is bad. After `max_repairs` repairs within
`window` on a node (or on a GPU UUID, wherever it moved), Vigil stops repairing it and marks it as
an RMA candidate instead. The count comes from the ledger, so it survives restarts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from remediator.domain.actions import ACTIONS

REPAIR_ACTIONS = ACTIONS.of("repair")  # GPU reset, reboot, replacement (declared in domain/actions.py)
COUNTED_STATES = ("running", "succeeded", "failed")  # attempts that reached the hardware
RMA_LABEL = "vigil.io/rma-candidate"
RMA_REASON_ANNOTATION = "vigil.io/rma-reason"
RESET_COMMAND = "nvidia-smi -pm 0 -i {{ uuid }} && nvidia-smi --gpu-reset -i {{ uuid }}"
REBOOT_COMMAND = "chroot /host systemctl reboot"
VALIDATE_COMMAND = "dcgmi diag -r 2"


@dataclass(frozen=True)
class JobSpec:
    """A Job pinned to a node: image, a shell command (a jinja2 template over node, uuid, gpu),
    how long it may take, and what host access it needs."""
    image: str
    command: str
    timeout: float = 300.0
    privileged: bool = True
    host_root: bool = False  # mount the host's / at /host (for chroot)
    host_pid: bool = False
    runtime_class: str = ""  # e.g. "nvidia", for a container that needs the driver's tools


@dataclass(frozen=True)
class SilenceSettings:
    alertmanager_url: str | None = None  # None: no silences
    grace: float = 1800.0  # how long a silence lasts at most; expired earlier when validation completes
    matchers: tuple[str, ...] = ('node="{{ node }}"',)  # Alertmanager matchers, templates over node and uuid
    timeout: float = 5.0
    bearer_token: str | None = None


@dataclass(frozen=True)
class RepairSettings:
    namespace: str = "vigil-repair"  # where repair and validation Jobs and SelfNodeRemediations go
    ttl_after_finished: int = 3600  # Jobs are garbage-collected this long after they finish
    service_account: str = ""
    taint_prefixes: tuple[str, ...] = ("vigil.io/",)  # Jobs tolerate the node's taints with these prefixes
    reset_gpu: JobSpec = field(default_factory=lambda: JobSpec(
        "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", RESET_COMMAND, 300.0, runtime_class="nvidia"))
    reboot_provider: str = "job"  # job | medik8s
    reboot_job: JobSpec = field(default_factory=lambda: JobSpec(
        "docker.io/library/busybox:1.36", REBOOT_COMMAND, 900.0, host_root=True, host_pid=True))
    medik8s_strategy: str = "Automatic"
    replace_provider: str = ""  # cluster-api | karpenter | "" (none)
    replace_timeout: float = 1800.0  # seconds to see the replacement confirmed (old Machine/NodeClaim or Node gone)
    cluster_api_version: str = "v1beta1"  # served by every Cluster API release with remediate-machine (v1.7+)
    validate_job: JobSpec | None = field(default_factory=lambda: JobSpec(
        "nvcr.io/nvidia/cloud-native/dcgm:4.2.3-1-ubuntu22.04", VALIDATE_COMMAND, 900.0, runtime_class="nvidia"))
    validate_queries: tuple[str, ...] = ()  # PromQL templates over node and uuid; each must return a sample
    pods_gone_timeout: float = 300.0  # reset_gpu waits this long for the GPU's pods to be gone
    max_repairs: int = 3
    window: float = 7 * 86400.0
    silence: SilenceSettings = field(default_factory=SilenceSettings)


@dataclass(frozen=True)
class RepairRecord:
    """One repair attempt, as the ledger holds it, with the GPU the incident was about."""
    incident_id: int
    type: str
    node: str
    uuid: str
    at: dt.datetime
    state: str


def exhausted(records: Sequence[RepairRecord], *, node: str, uuid: str, settings: RepairSettings,
              now: dt.datetime, incident_id: int | None = None) -> str | None:
    """Why `node` (or GPU `uuid`) must not be repaired again, or None. Counts distinct incidents
    with a repair attempt within the window, other than `incident_id` (its own ladder goes on)."""
    if settings.max_repairs <= 0:
        return None
    since = now - dt.timedelta(seconds=settings.window)
    recent = [r for r in records if r.at >= since and r.state in COUNTED_STATES and r.type in REPAIR_ACTIONS
              and r.incident_id != incident_id]
    days = settings.window / 86400
    for what, key, hits in (("node", node, {r.incident_id for r in recent if r.node == node}),
                            ("GPU", uuid, {r.incident_id for r in recent if uuid and r.uuid == uuid})):
        if key and len(hits) >= settings.max_repairs:
            ids = ", ".join(str(i) for i in sorted(hits))
            return (f"{what} {key} was repaired {len(hits)} times in {days:g} days (incidents {ids}); "
                    f"max_repairs {settings.max_repairs}: no more automatic repair, RMA candidate")
    return None
