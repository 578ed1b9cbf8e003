"""The kubelet's PodResources v1 API, vendored.

`v1/api.proto` is k8s.io/kubelet v0.34.4 `pkg/apis/podresources/v1/api.proto`, unchanged (Apache
2.0; that release's proto has no imports). `v1/api_pb2.py`, `v1/api_pb2.pyi` and
`v1/api_pb2_grpc.py` are generated from it by grpcio-tools 1.85.1 (`make podresources-stubs`,
`scripts/podresources_stubs.py`) and committed; a test regenerates them and fails if they differ.
The generated code needs protobuf >= 7.35 and grpcio >= 1.85.1 at run time (pyproject.toml).
"""
