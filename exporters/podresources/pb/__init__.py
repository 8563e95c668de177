"""Generated kubelet PodResources v1 protobuf/gRPC stubs and their .proto."""
