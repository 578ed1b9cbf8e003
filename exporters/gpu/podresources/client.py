"""The kubelet's PodResources v1 gRPC client. The only module that imports grpc and the generated
stubs: the exporter imports it only with `--pod-resources-socket`, so an exporter without pod
attribution never loads grpc or protobuf (about 10 MiB of its resident memory)."""

from __future__ import annotations

import grpc

from exporters.gpu.attribution import PodResourcesError
from exporters.gpu.podresources.v1 import api_pb2, api_pb2_grpc


def _error(err: grpc.RpcError) -> PodResourcesError:
    """A call's error (grpc raises a grpc.Call that is also an RpcError) as the exporter's own."""
    return PodResourcesError(err.code().name, err.details() or "")


class PodResourcesClient:
    """List and GetAllocatableResources over the kubelet's unix socket; errors as PodResourcesError."""

    def __init__(self, socket_path: str, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)

    def list(self) -> api_pb2.ListPodResourcesResponse:
        try:
            return self._stub.List(api_pb2.ListPodResourcesRequest(), timeout=self.timeout)
        except grpc.RpcError as err:
            raise _error(err) from err

    def allocatable(self) -> api_pb2.AllocatableResourcesResponse | None:
        """None where the kubelet does not implement it (before 1.21, or the feature gate off)."""
        try:
            return self._stub.GetAllocatableResources(api_pb2.AllocatableResourcesRequest(), timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise _error(err) from err

    def close(self) -> None:
        self._channel.close()
