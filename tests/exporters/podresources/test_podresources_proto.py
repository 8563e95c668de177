"""The checked-in PodResources stubs match api.proto, and api.proto matches the kubelet's wire format."""

from __future__ import annotations

from pathlib import Path

from gpulens.exporters.podresources.pb import api_pb2
from gpulens.exporters.podresources.pb.generate import HERE, OUTPUTS, generate


def test_checked_in_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (HERE / name).read_bytes(), (
            f"{name} drifted from api.proto: run `python exporters/podresources_pb/generate.py`")


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); payloads here are < 128 bytes, so the length is one byte."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


# The kubelet's field numbers (k8s.io/kubelet/pkg/apis/podresources/v1/api.proto), spelled out by hand.
NUMA_NODE = b"\x08\x01"  # NUMANode.ID = 1 (field 1, varint)
DEVICES = (_field(1, b"nvidia.com/mig-1g.10gb")                 # ContainerDevices.resource_name
           + _field(2, b"MIG-4f1c") + _field(2, b"MIG-9a2e")     # ContainerDevices.device_ids
           + _field(3, _field(1, NUMA_NODE)))                    # .topology -> TopologyInfo.nodes
CONTAINER = (_field(1, b"kserve-container")                      # ContainerResources.name
             + _field(2, DEVICES)                                # ContainerResources.devices
             + _field(3, b"\x02\x03"))                           # ContainerResources.cpu_ids, packed
POD = _field(1, b"llama-predictor-0") + _field(2, b"models") + _field(3, CONTAINER)
WIRE = _field(1, POD)                                            # ListPodResourcesResponse.pod_resources


def test_hand_encoded_kubelet_reply_parses_to_the_expected_allocation() -> None:
    reply = api_pb2.ListPodResourcesResponse.FromString(WIRE)
    [pod] = reply.pod_resources
    assert (pod.namespace, pod.name) == ("models", "llama-predictor-0")
    [container] = pod.containers
    assert container.name == "kserve-container"
    assert list(container.cpu_ids) == [2, 3]
    [devices] = container.devices
    assert devices.resource_name == "nvidia.com/mig-1g.10gb"
    assert list(devices.device_ids) == ["MIG-4f1c", "MIG-9a2e"]
    assert [node.ID for node in devices.topology.nodes] == [1]
    assert reply.SerializeToString() == WIRE  # and we encode exactly as the kubelet does


def test_service_path_is_the_kubelets() -> None:
    [service] = api_pb2.DESCRIPTOR.services_by_name.values()
    assert service.full_name == "v1.PodResourcesLister"
    assert "List" in service.methods_by_name
