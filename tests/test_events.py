"""The event API: typed constructors → ECS documents on stdout and to the attached shippers, never blocking or raising."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gpulens import events, logs

GPU = events.Gpu(3, "GPU-sim-0003", name="NVIDIA H100 80GB HBM3", pci_bus_id="00000000:41:00.0")
POD = events.Pod("models", "llama-0", "kserve-container")
ENV = {"NODE_NAME": "gpu-node-7", "POD_NAME": "gpulens-gpu-x2k", "POD_NAMESPACE": "gpulens"}
T0 = 1764547200.0  # 2025-12-01T00:00:00Z


class Sink:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def submit(self, document: Any) -> str:
        self.docs.append(document)
        return str(len(self.docs))


@pytest.fixture
def stdout() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.setup("info", "gpulens-gpu-exporter", stream=out, env=ENV)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def _doc(event: events.Event) -> dict[str, Any]:
    return event.document(logs.context("gpulens-gpu-exporter", ENV))


def test_xid_is_an_alert_with_gpu_identity_and_pod() -> None:
    doc = _doc(events.xid(GPU, 79, pod=POD, timestamp=T0))
    assert doc["event"] == {"kind": "alert", "category": ["host", "driver"], "type": ["error"], "action": "gpu.xid",
                            "dataset": "gpulens", "severity": 4, "code": "79", "reason": "GPU has fallen off the bus",
                            "created": "2025-12-01T00:00:00.000Z"}
    assert doc["@timestamp"] == "2025-12-01T00:00:00.000Z" and doc["log"]["level"] == "critical"
    assert doc["gpu"] == {"index": 3, "uuid": "GPU-sim-0003", "name": "NVIDIA H100 80GB HBM3",
                          "pci_bus_id": "00000000:41:00.0", "xid": 79}
    assert doc["workload"] == {"namespace": "models", "pod": "llama-0", "container": "kserve-container"}
    assert doc["message"] == "XID 79 on GPU 3 (GPU-sim-0003): GPU has fallen off the bus"
    # where it was seen (this process's pod) stays apart from whose GPU it is (the workload)
    assert doc["kubernetes"]["pod"]["name"] == "gpulens-gpu-x2k" and doc["host"]["name"] == "gpu-node-7"


def test_a_recoverable_xid_is_an_error_not_critical() -> None:
    doc = _doc(events.xid(GPU, 13))
    assert doc["event"]["severity"] == events.SEVERITY["error"] and doc["log"]["level"] == "error"
    assert "workload" not in doc


def test_lost_recovered_and_a_throttling_episode() -> None:
    lost = _doc(events.gpu_lost(GPU, "GpuIsLost", pod=POD))
    assert (lost["event"]["action"], lost["event"]["kind"], lost["event"]["outcome"], lost["event"]["code"]) == \
        ("gpu.lost", "alert", "failure", "GpuIsLost")
    back = _doc(events.gpu_recovered(GPU, down_seconds=12.5))
    assert back["event"]["type"] == ["info"] and back["event"]["duration"] == 12_500_000_000  # ECS: nanoseconds
    start = _doc(events.throttle_start(GPU, ("sw_power_cap", "hw_thermal_slowdown")))
    stop = _doc(events.throttle_stop(GPU, ("sw_power_cap", "hw_thermal_slowdown"), duration_seconds=4.0))
    assert (start["event"]["type"], stop["event"]["type"]) == (["start"], ["end"])
    assert start["gpu"]["throttle"]["reasons"] == ["hw_thermal_slowdown", "sw_power_cap"]
    assert start["event"]["code"] == stop["event"]["code"] == "hw_thermal_slowdown,sw_power_cap"
    assert start["event"]["severity"] == 2 and stop["event"]["duration"] == 4_000_000_000


def test_inferenceservice_readiness_both_ways() -> None:
    down = _doc(events.inferenceservice_ready_changed("models", "llama", False, "PredictorNotReady", "http://llama.models"))
    up = _doc(events.inferenceservice_ready_changed("models", "llama", True))
    assert down["event"]["kind"] == "alert" and down["event"]["outcome"] == "failure" and down["event"]["code"] == "NotReady"
    assert down["inferenceservice"] == {"namespace": "models", "name": "llama", "ready": False}
    assert down["url"]["full"] == "http://llama.models" and down["message"].endswith("is not ready: PredictorNotReady")
    assert up["event"]["kind"] == "state" and up["log"]["level"] == "info" and up["inferenceservice"]["ready"] is True


def test_probe_failed_carries_the_trace_id_given_or_current() -> None:
    doc = _doc(events.probe_failed("llama-v2", "http_503", url="http://llama/v2/models/llama/infer", protocol="v2",
                                   status_code=503, duration_seconds=0.25, trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))
    assert doc["trace"] == {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert doc["http"]["response"]["status_code"] == 503 and doc["probe"] == {"target": "llama-v2", "protocol": "v2"}
    assert doc["event"]["category"] == ["web", "network"] and doc["event"]["reason"] == "http_503"
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("probe") as span:
        inside = events.probe_failed("t", "timeout")  # created inside the span: its ids
    ctx = span.get_span_context()
    in_doc = _doc(inside)
    assert in_doc["trace"]["id"] == format(ctx.trace_id, "032x") and in_doc["span"]["id"] == format(ctx.span_id, "016x")


def test_emit_writes_one_ecs_line_and_ships_the_same_document(stdout: io.StringIO) -> None:
    emitter = events.Emitter("gpulens-gpu-exporter", env=ENV)
    sink = Sink()
    emitter.attach(sink)
    doc = emitter.emit(events.xid(GPU, 79, pod=POD, timestamp=T0))
    [line] = stdout.getvalue().splitlines()
    assert line.startswith('{"@timestamp":"2025-12-01T00:00:00.000Z","log.level":"critical","message":"XID 79')
    assert sink.docs == [doc]
    parsed = json.loads(line)
    assert parsed["event"] == doc["event"] and parsed["gpu"] == doc["gpu"]
    emitter.detach(sink)
    emitter.emit(events.gpu_recovered(GPU))
    assert len(sink.docs) == 1 and len(stdout.getvalue().splitlines()) == 2


def test_a_failing_sink_never_breaks_the_caller(stdout: io.StringIO) -> None:
    class Broken:
        def submit(self, document: Any) -> str:
            raise RuntimeError("queue gone")

    emitter = events.Emitter("svc", env={})
    good = Sink()
    emitter.attach(Broken())
    emitter.attach(good)
    emitter.emit(events.gpu_lost(GPU, "GpuIsLost"))
    assert len(good.docs) == 1
    assert "shipping an event failed" in stdout.getvalue()


def test_module_level_emit_and_attach(stdout: io.StringIO) -> None:
    sink = Sink()
    events.configure("gpulens-gpu-exporter", env=ENV)
    events.attach(sink)
    try:
        events.emit(events.throttle_start(GPU, ("sw_power_cap",)))
    finally:
        events.detach(sink)
    assert [d["event"]["action"] for d in sink.docs] == ["gpu.throttle.start"]
    assert sink.docs[0]["service"]["name"] == "gpulens-gpu-exporter"


def test_every_action_has_a_constructor() -> None:
    made = {events.xid(GPU, 1).action, events.gpu_lost(GPU, "x").action, events.gpu_recovered(GPU).action,
            events.throttle_start(GPU, ()).action, events.throttle_stop(GPU, ()).action,
            events.inferenceservice_ready_changed("n", "m", True).action, events.probe_failed("t", "r").action}
    assert made == set(events.ACTIONS)


def test_the_gpu_exporter_emits_lost_recovered_and_xid_events() -> None:
    import dataclasses

    from gpulens.sim import SimulatedNVML
    from tests.exporters.gpu.test_gpu_exporter import CFG, Clock, _cycles, _exporter

    clock = Clock()
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    sink = Sink()
    events.attach(sink)
    try:
        exporter = _exporter(nv, clock, dataclasses.replace(CFG, xid_events=True))
        _cycles(exporter, clock, 2)
        assert exporter.events is not None and exporter.events.register()
        nv.inject_xid(0, 79)
        assert exporter.events.poll()
        nv.lose_gpu(1)
        _cycles(exporter, clock, 2)
        nv.restore_gpu(1)
        _cycles(exporter, clock, 2)
        nv.set_throttle(0, 0x40)  # HwThermalSlowdown
        _cycles(exporter, clock, 3)
        nv.set_throttle(0, 0)
        _cycles(exporter, clock, 1)
    finally:
        events.detach(sink)
    assert [(d["event"]["action"], d["gpu"]["index"]) for d in sink.docs] == [
        ("gpu.xid", 0), ("gpu.lost", 1), ("gpu.recovered", 1), ("gpu.throttle.start", 0), ("gpu.throttle.stop", 0)]
    assert sink.docs[3]["gpu"]["throttle"]["reasons"] == ["hw_thermal_slowdown"] and sink.docs[4]["event"]["duration"] > 0
    assert sink.docs[0]["event"]["code"] == "79" and sink.docs[1]["event"]["code"] == "GpuIsLost"


def test_throttle_episodes_from_clock_event_masks() -> None:
    from gpulens.exporters.gpu.nvml import CLOCK_EVENT_REASONS as BITS

    episodes = events.ThrottleEpisodes(BITS)
    assert episodes.update(GPU, BITS["gpu_idle"], T0) is None  # idle is not throttling
    start = episodes.update(GPU, BITS["sw_power_cap"] | BITS["gpu_idle"], T0 + 1)
    assert start is not None and start.action == "gpu.throttle.start" and start.code == "sw_power_cap"
    assert episodes.update(GPU, BITS["sw_power_cap"] | BITS["hw_thermal_slowdown"], T0 + 2) is None  # same episode
    assert episodes.update(GPU, None, T0 + 3) is None  # not read this time
    stop = episodes.update(GPU, 0, T0 + 5.5)
    assert stop is not None and stop.action == "gpu.throttle.stop" and stop.duration_seconds == 4.5
    assert stop.code == "sw_power_cap" and stop.timestamp == T0 + 5.5
    assert episodes.update(GPU, 0, T0 + 6) is None
