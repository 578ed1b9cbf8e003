"""A kubelet pod-resources endpoint for tests: a real gRPC server on a unix socket serving the
vendored v1 proto (the only thing simulated is which pods the node has)."""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path

import grpc

from exporters.gpu.podresources.v1 import api_pb2, api_pb2_grpc


def pod(namespace: str, name: str, containers: dict[str, list[tuple[str, list[str]]]]) -> api_pb2.PodResources:
    """containers: name -> [(resource, [device ids])]."""
    return api_pb2.PodResources(namespace=namespace, name=name, containers=[
        api_pb2.ContainerResources(name=c, devices=[api_pb2.ContainerDevices(resource_name=r, device_ids=ids)
                                                    for r, ids in devs])
        for c, devs in containers.items()])


class _Lister(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, kubelet: FakeKubelet) -> None:
        self.kubelet = kubelet

    def List(self, request, context):
        with self.kubelet.lock:
            self.kubelet.list_calls += 1
            return api_pb2.ListPodResourcesResponse(pod_resources=list(self.kubelet.pods))

    def GetAllocatableResources(self, request, context):
        if self.kubelet.allocatable is None:  # as a kubelet before 1.21: the servicer's default
            return super().GetAllocatableResources(request, context)
        return api_pb2.AllocatableResourcesResponse(devices=[
            api_pb2.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in self.kubelet.allocatable])


class FakeKubelet:
    def __init__(self, socket: Path, *, allocatable: list[tuple[str, list[str]]] | None = None) -> None:
        self.socket = socket
        self.lock = threading.Lock()
        self.pods: list[api_pb2.PodResources] = []
        self.allocatable = allocatable
        self.list_calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(_Lister(self), self.server)
        self.server.add_insecure_port(f"unix://{socket}")
        self.server.start()

    def set_pods(self, *pods: api_pb2.PodResources) -> None:
        with self.lock:
            self.pods = list(pods)

    def stop(self) -> None:
        self.server.stop(grace=None)
