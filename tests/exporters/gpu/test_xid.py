"""The NVML event watcher: exact XID counts under bursts, ECS alert logs, recovery after a lost GPU."""

from __future__ import annotations

import json
import logging
import time

from prometheus_client.exposition import generate_latest

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.podresources.client import Allocation
from gpulens.metrics import gpu as c
from gpulens.sim import SimulatedNVML

CFG = GpuExporterConfig(xid_events=True, pod_attribution=False, interval_seconds=0.05)


class _Registry:
    def __init__(self, collect):
        self.collect = collect


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _xid_count(exporter: GpuExporter, gpu: str, xid: str) -> float:
    assert exporter.events is not None
    for family in exporter.events.collect():
        if family.name == c.XID_ERRORS.name.removesuffix("_total"):
            for s in family.samples:
                if s.labels["gpu"] == gpu and s.labels["xid"] == xid and s.name.endswith("_total"):
                    return s.value
    return 0.0


def test_burst_of_10000_xids_counted_exactly_without_stalling_sampling() -> None:
    nv = SimulatedNVML(count=2, model="h100")
    exporter = GpuExporter(CFG, nv, "simulated")
    logging.getLogger("gpulens.gpu_exporter").setLevel(logging.CRITICAL)  # 10k alert lines are not the point here
    exporter.start()
    try:
        _wait(lambda: exporter.events is not None and exporter.sampler.snapshot is not None and exporter.events.current)
        cycles_before = exporter.sampler.snapshot.duration_buckets[-1]
        for _ in range(10_000):
            nv.inject_xid(1, 79)
        nv.inject_xid(0, 48)
        _wait(lambda: _xid_count(exporter, "1", "79") == 10_000 and _xid_count(exporter, "0", "48") == 1)
        assert _xid_count(exporter, "0", "79") == 0
        assert exporter.sampler.snapshot.duration_buckets[-1] > cycles_before  # sampler kept cycling
        assert exporter.events.last_xid()[exporter.sampler.snapshot.gpus[1].identity.uuid] == 79
        text = generate_latest(_Registry(exporter.events.collect)).decode()
        assert 'gpulens_gpu_xid_last_timestamp_seconds{gpu="1"' in text
        assert 'gpulens_gpu_events_total{gpu="1"' in text and 'type="xid"' in text
    finally:
        exporter.stop()


def test_xid_is_logged_as_an_ecs_alert_with_pod(capsys) -> None:
    from gpulens import logs

    nv = SimulatedNVML(count=1, model="h100")
    nv.nvmlInit()
    uuid = nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(0))

    class Pods:
        def mapping(self):
            return {uuid: (Allocation("models", "llama-0", "kserve-container", "nvidia.com/gpu"),)}

        def collect(self):
            return iter(())

    log = logs.setup("info", "gpulens-gpu-exporter")
    exporter = GpuExporter(CFG, nv, "simulated", pods=Pods(), log=log)  # type: ignore[arg-type]
    exporter.sampler.start()
    exporter.events.start()
    try:
        _wait(lambda: exporter.events.up)
        nv.inject_xid(0, 79)
        _wait(lambda: _xid_count(exporter, "0", "79") == 1)
    finally:
        exporter.events.stop()
        exporter.sampler.stop()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"gpu.xid"' in line]
    assert len(lines) == 1
    event = lines[0]
    assert event["event"]["kind"] == "alert" and event["event"]["code"] == "79"
    assert event["gpu"]["uuid"] == uuid and event["service"]["name"] == "gpulens-gpu-exporter"
    assert event["workload"] == {"namespace": "models", "pod": "llama-0", "container": "kserve-container"}
    assert "fallen off the bus" in event["message"]


def test_lost_gpu_while_waiting_reregisters_after_recovery() -> None:
    nv = SimulatedNVML(count=2, model="h100")
    exporter = GpuExporter(CFG, nv, "simulated")
    exporter.start()
    try:
        _wait(lambda: exporter.events.up and exporter.sampler.snapshot is not None)
        nv.lose_gpu(0)
        _wait(lambda: not exporter.sampler.snapshot.gpus[0].up)
        nv.restore_gpu(0)
        _wait(lambda: exporter.sampler.snapshot.gpus[0].up)
        _wait(lambda: exporter.events.registered == 2)  # re-registered once the sampler re-enumerated
        nv.inject_xid(0, 62)
        nv.inject_xid(1, 62)
        _wait(lambda: _xid_count(exporter, "0", "62") == 1 and _xid_count(exporter, "1", "62") == 1)
    finally:
        exporter.stop()


def test_registration_refused_everywhere_is_down_and_retried() -> None:
    import pynvml

    nv = SimulatedNVML(count=2, model="h100")
    nv.set_error("nvmlDeviceRegisterEvents", pynvml.NVML_ERROR_NO_PERMISSION)
    exporter = GpuExporter(CFG, nv, "simulated")
    exporter.start()
    try:
        time.sleep(0.5)
        assert not exporter.events.up
        nv.clear_error("nvmlDeviceRegisterEvents")
        _wait(lambda: exporter.events.up)
        nv.inject_xid(1, 79)
        _wait(lambda: _xid_count(exporter, "1", "79") == 1)
    finally:
        exporter.stop()
