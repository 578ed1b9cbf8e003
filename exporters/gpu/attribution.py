"""Which pod holds each GPU: the kubelet's PodResources v1 API (`List`, and
`GetAllocatableResources` where the kubelet has it), read on an interval on its own thread and
exported as one join series per allocation, `gpu_allocation_info{gpu, uuid, namespace, pod,
container} 1`. Per-GPU series never get pod labels (dcgm-exporter's churn and `exported_pod`).

Device ids the NVIDIA device plugin hands out, mapped to the parent GPU's UUID:
`GPU-<uuid>` (whole GPU), `GPU-<uuid>::<n>` (time-slicing replica), `MIG-GPU-<uuid>/<gi>/<ci>`
(MIG before R470), `MIG-<uuid>` (MIG, resolved through NVML: MIG handle -> parent handle), and
GKE's `nvidia<index>[/gi<n>|/vgpu<n>]`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporters.gpu.device import Sample
from exporters.gpu.session import NvmlSession, text

if TYPE_CHECKING:  # grpc and protobuf are loaded only when pod attribution is on (exporter.build)
    from exporters.gpu.podresources.client import PodResourcesClient
    from exporters.gpu.podresources.v1 import api_pb2

log = logging.getLogger(__name__)

KUBELET_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"


class PodResourcesError(Exception):
    """A failed call to the kubelet's pod-resources API; `code` is the gRPC status name."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
_GKE = re.compile(r"^nvidia(\d+)(?:/.*)?$")


def is_gpu_resource(name: str) -> bool:
    return name == "nvidia.com/gpu" or name.startswith(("nvidia.com/gpu.", "nvidia.com/mig-"))


@dataclass(frozen=True, order=True)
class Allocation:
    gpu: str
    uuid: str
    namespace: str
    pod: str
    container: str


class MigResolver:
    """MIG device UUID -> parent GPU UUID through NVML, remembered (MIG layouts change rarely)."""

    def __init__(self, session: NvmlSession) -> None:
        self.session = session
        self._known: dict[str, str] = {}

    def __call__(self, mig_uuid: str) -> str | None:
        if mig_uuid in self._known:
            return self._known[mig_uuid]
        nvml = self.session.nvml
        if not self.session.up:
            return None
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(mig_uuid.encode())
            parent = text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)))
        except nvml.NVMLError as err:
            log.warning("MIG device %s: no parent GPU through NVML (%s)", mig_uuid, err)
            return None
        self._known[mig_uuid] = parent
        return parent


def parent_gpu(device_id: str, *, mig: Callable[[str], str | None], by_index: dict[str, str]) -> str | None:
    """The parent GPU's UUID of a device id, or None if it cannot be told."""
    base = device_id.split("::", 1)[0]
    if base.startswith("GPU-"):
        return base
    if base.startswith("MIG-GPU-"):
        return base.removeprefix("MIG-").split("/", 1)[0]
    if base.startswith("MIG-"):
        return mig(base)
    m = _GKE.match(base)
    return by_index.get(m.group(1)) if m else None


class Attribution:
    """Refreshes allocations every `interval` seconds on a daemon thread; scrapes read the result."""

    def __init__(self, client: PodResourcesClient, session: NvmlSession, *, interval: float = 10.0) -> None:
        self.client, self.session, self.interval = client, session, interval
        self.mig = MigResolver(session)
        self.up = False
        self._allocations: tuple[Allocation, ...] = ()
        self._allocatable: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-resources", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)
        self.client.close()

    def refresh(self) -> None:
        try:
            listed = self.client.list()
            allocatable = self.client.allocatable()
        except PodResourcesError as err:
            if self.up:
                log.warning("kubelet pod-resources API failed: %s", err.code)
            self.up, self._allocations = False, ()  # stale attribution would name the wrong pods
            return
        self._allocations = self._map(listed)
        self._allocatable = ({} if allocatable is None else
                             _count_devices(d for d in allocatable.devices if is_gpu_resource(d.resource_name)))
        self.up = True

    def _map(self, listed: api_pb2.ListPodResourcesResponse) -> tuple[Allocation, ...]:
        devices = self.session.devices()
        by_index = {str(d.index): d.uuid for d in devices}
        index_of = {d.uuid: str(d.index) for d in devices}
        out = set()
        for pod in listed.pod_resources:
            for container in pod.containers:
                for dev in container.devices:
                    if not is_gpu_resource(dev.resource_name):
                        continue
                    for device_id in dev.device_ids:
                        uuid = parent_gpu(device_id, mig=self.mig, by_index=by_index)
                        if uuid is None:
                            log.warning("pod %s/%s: cannot map device %s", pod.namespace, pod.name, device_id)
                            continue
                        out.add(Allocation(index_of.get(uuid, ""), uuid, pod.namespace, pod.name, container.name))
        return tuple(sorted(out))

    def pods_of(self, uuid: str) -> list[str]:
        """"namespace/pod" of every pod holding this GPU, sorted by pod as the rules' descriptions."""
        held = {(a.pod, f"{a.namespace}/{a.pod}") for a in self._allocations if a.uuid == uuid}
        return [name for _, name in sorted(held)]

    def samples(self) -> list[Sample]:
        out = [Sample("gpu_allocation_info", (a.gpu, a.uuid, a.namespace, a.pod, a.container), 1)
               for a in self._allocations]
        out += [Sample("gpu_exporter_pod_resources_allocatable_devices", (r,), n)
                for r, n in sorted(self._allocatable.items())]
        out.append(Sample("gpu_exporter_pod_resources_up", (), 1 if self.up else 0))
        return out


def _count_devices(devices) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in devices:
        counts[d.resource_name] = counts.get(d.resource_name, 0) + len(d.device_ids)
    return counts
