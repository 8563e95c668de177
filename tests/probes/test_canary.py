"""The GPU canary: real torch on the CPU here (device="cpu"), CUDA under `make test-gpu`."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpulens.cli import main as cli_main
from gpulens.probes.canary.app import CanaryApp
from gpulens.probes.canary.collectors import Canary, nvml_utilization
from gpulens.probes.canary.config import CanaryConfig
from gpulens.probes.canary.expected import TABLE, lookup
from gpulens.probes.canary.workload import PHASES, Device, plan, run_canary

CPU = CanaryConfig(device="cpu", matmul_size=256, copy_bytes=4 * 1024**2)


def _samples(app: CanaryApp) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(app.render_parts(False)[0].decode()):
        out.setdefault(fam.name, []).extend(fam.samples)
    return out


def test_cpu_canary_runs_every_phase_and_verifies() -> None:
    import torch

    [device] = __import__("gpulens.probes.canary.workload", fromlist=["devices"]).devices(torch, "cpu")
    result = run_canary(torch, device, 256, 4 * 1024**2)
    assert result.success, result.error
    assert tuple(result.phases) == PHASES and all(s > 0 for s in result.phases.values())
    assert result.dtype == "fp32" and result.matmul_flops is not None and result.matmul_flops > 1e6
    assert set(result.copy) == {"h2d", "d2d", "d2h"} and min(result.copy.values()) > 1e6
    assert [m[0] for m in result.marks] == list(PHASES)


def test_collector_exports_cpu_series_without_ratios() -> None:
    canary = Canary(CPU, utilization=lambda d: None)
    app = CanaryApp(canary)
    app.step()
    samples = _samples(app)
    [ok] = samples["gpulens_canary_success"]
    assert ok.value == 1 and ok.labels["device"] == "cpu" and ok.labels["gpu"] == "0"
    assert {s.labels["phase"] for s in samples["gpulens_canary_phase_duration_seconds"]} == set(PHASES)
    assert [s.labels["dtype"] for s in samples["gpulens_canary_matmul_flops_per_second"]] == ["fp32"]
    assert "gpulens_canary_matmul_expected_ratio" not in samples  # the CPU has no expected figure: no made-up ratio
    assert app.render_parts(True)[1] == b"# EOF\n"


class FakeTorch:
    """Just enough torch for device discovery: one visible CUDA GPU (the run itself is not reached)."""

    class cuda:  # noqa: N801 - mirrors torch.cuda
        @staticmethod
        def is_available() -> bool:
            return True

        @staticmethod
        def device_count() -> int:
            return 1

        @staticmethod
        def get_device_properties(i: int) -> Any:
            return type("P", (), {"name": "NVIDIA H100 80GB HBM3", "uuid": "1234-abcd"})()


def test_a_busy_gpu_is_skipped_and_a_missing_one_counted() -> None:
    canary = Canary(CanaryConfig(device="cuda", busy_threshold=0.5), torch=FakeTorch(), utilization=lambda d: 0.93)
    assert canary.run_once() == []
    assert canary.skipped == {("0", "GPU-1234-abcd", "cuda", "busy"): 1}
    import torch

    if not torch.cuda.is_available():
        none = Canary(CanaryConfig(device="cuda"), utilization=lambda d: None)
        none.run_once()
        assert none.skipped == {("0", "", "cuda", "no_device"): 1}


def test_nvml_utilization_reads_the_simulated_nvml_by_uuid() -> None:
    from gpulens.sim import SimulatedNVML

    nv = SimulatedNVML(count=1, model="h100")
    nv.nvmlInit()
    uuid = nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(0))
    read = nvml_utilization(nv)
    value = read(Device("cuda", 0, uuid, "NVIDIA H100 80GB HBM3"))
    assert value is not None and 0 <= value <= 1
    assert read(Device("cuda", 0, "GPU-unknown", "x")) is None  # NVML error → unknown → the canary runs
    assert read(Device("cpu", 0, "cpu-host", "cpu")) is None


def test_expected_figures_table() -> None:
    assert lookup("NVIDIA H100 80GB HBM3").model == "H100 SXM"  # type: ignore[union-attr]
    assert lookup("NVIDIA H100 PCIe").matmul_tflops == 756  # type: ignore[union-attr]
    assert lookup("NVIDIA A100-SXM4-80GB").matmul_tflops == 312  # type: ignore[union-attr]
    assert lookup("NVIDIA A10").model == "A10" and lookup("NVIDIA L4").model == "L4"  # type: ignore[union-attr]
    assert lookup("NVIDIA L40S").model == "L40S"  # type: ignore[union-attr]
    assert lookup("Tesla T4").dtype == "fp16"  # type: ignore[union-attr]
    assert lookup("NVIDIA H200").matmul_tflops == 989  # type: ignore[union-attr]
    assert lookup("NVIDIA GeForce RTX 4090") is None
    assert all(row.source for row in TABLE)
    h100 = lookup("NVIDIA H100 80GB HBM3")
    assert h100 is not None and h100.matmul_flops() == pytest.approx(989e12 * 0.8)
    assert h100.copy_bytes_per_second("h2d") == pytest.approx(63e9 * 0.8)


def test_memory_cap_shrinks_the_sizes() -> None:
    gpu = Device("cuda", 0, "GPU-x", "NVIDIA H100")
    n, copy = plan(gpu, 0, 0, 2 * 1024**3, 2)
    assert (n, copy) == (8192, 256 * 1024**2)
    n, copy = plan(gpu, 0, 0, 256 * 1024**2, 2)
    assert 2 * copy + 3 * n * n * 2 + 64 * 1024**2 <= 256 * 1024**2


def test_cli_canary_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["canary", "--device", "tpu", "--busy-threshold", "2"]) == 2
    err = capsys.readouterr().err
    assert "gpulens canary: flag --device: 'tpu' is not allowed (allowed: auto, cuda, cpu)" in err
    assert "gpulens canary: flag --busy-threshold: 2.0 is above the maximum 1.0" in err


@pytest.mark.gpu
def test_cuda_canary_on_a_real_gpu() -> None:
    import torch

    assert torch.cuda.is_available()
    canary = Canary(CanaryConfig(device="cuda", busy_threshold=1.0))
    results = canary.run_once()
    assert results and all(r.success for r in results), [r.error for r in results]
    for r in results:
        assert r.device.kind == "cuda" and r.device.uuid.startswith(("GPU-", "MIG-"))
        assert r.dtype in ("bf16", "fp16") and r.matmul_flops and r.matmul_flops > 1e12
        print(f"{r.device.name}: matmul {r.matmul_flops / 1e12:.1f} TFLOP/s {r.dtype}, "
              + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in r.copy.items()))
    app = CanaryApp(canary)
    app._rendered = app._renderer.render(app._families())
    samples = _samples(app)
    if lookup(results[0].device.name) is not None:
        ratios = samples["gpulens_canary_matmul_expected_ratio"]
        assert ratios and all(0.2 < s.value < 2.0 for s in ratios), ratios
