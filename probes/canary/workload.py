"""The canary workload: host→device copy, a fixed matmul, a small conv net forward, device→device and
device→host copies, each timed (CUDA events on a GPU, perf_counter on the CPU) and its result verified.

Sizes are fixed per run (same seed, same shapes) so results compare across GPUs and over time; the
total allocation stays under the memory cap. `device="cpu"` runs the same steps on the CPU (tests,
laptops), with float32.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PHASES = ("h2d", "matmul", "conv", "d2d", "d2h")
SEED = 20261201
MATMUL_ITERS = 5
CONV_BATCH, CONV_SIZE = 16, 64


@dataclass(frozen=True)
class Device:
    kind: str  # cuda | cpu
    index: int
    uuid: str  # NVML-style "GPU-…" on CUDA, "cpu-<host>" on the CPU
    name: str

    @property
    def gpu(self) -> str:
        return str(self.index)


@dataclass
class CanaryResult:
    device: Device
    success: bool
    error: str = ""
    dtype: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds
    matmul_flops: float | None = None  # FLOP/s
    copy: dict[str, float] = field(default_factory=dict)  # direction (h2d|d2d|d2h) → bytes/s
    marks: list[tuple[str, int, int]] = field(default_factory=list)  # (phase, start, end) epoch ns, for spans
    sizes: tuple[int, int] = (0, 0)  # (matmul n, copy bytes)


def devices(torch: Any, want: str) -> list[Device]:
    """The devices to run on: every visible CUDA GPU, or the CPU (`auto`: CUDA when available)."""
    if want in ("auto", "cuda") and torch.cuda.is_available():
        out = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            uuid = str(getattr(props, "uuid", "") or "")
            out.append(Device("cuda", i, uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}" if uuid else "", props.name))
        return out
    if want == "cuda":
        return []
    return [Device("cpu", 0, f"cpu-{socket.gethostname()}", "cpu")]


def plan(device: Device, matmul_size: int, copy_bytes: int, memory_cap: int, element_size: int) -> tuple[int, int]:
    """(n, copy bytes) within `memory_cap`: two copy buffers on the device, three n×n matrices, the conv net."""
    n = matmul_size or (8192 if device.kind == "cuda" else 512)
    copy = copy_bytes or (256 * 1024**2 if device.kind == "cuda" else 16 * 1024**2)
    conv = 64 * 1024**2  # activations and weights of the small net, generously

    def total(n: int, copy: int) -> int:
        return 2 * copy + 3 * n * n * element_size + 4 * n * n + conv  # + the float32 matrix each is drawn in

    while total(n, copy) > memory_cap and copy > 1024**2:
        copy //= 2
    while total(n, copy) > memory_cap and n > 256:
        n //= 2
    return n, copy


def dtype_for(torch: Any, device: Device) -> tuple[Any, str]:
    """bf16 on GPUs with fast bf16, fp16 on older ones (T4), fp32 on the CPU."""
    if device.kind == "cpu":
        return torch.float32, "fp32"
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, "bf16"
    return torch.float16, "fp16"


class _Timer:
    """Per-phase timing: CUDA events on a GPU (device time), perf_counter on the CPU; host marks for spans."""

    def __init__(self, torch: Any, device: Device):
        self.torch, self.cuda = torch, device.kind == "cuda"
        self.seconds: dict[str, float] = {}
        self.marks: list[tuple[str, int, int]] = []
        self._wall0, self._perf0 = time.time_ns(), time.perf_counter_ns()

    def run(self, phase: str, work: Callable[[], Any]) -> Any:
        host_start = time.perf_counter_ns()
        if self.cuda:
            start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            start.record()
            out = work()
            end.record()
            end.synchronize()
            self.seconds[phase] = start.elapsed_time(end) / 1000
        else:
            out = work()
            self.seconds[phase] = (time.perf_counter_ns() - host_start) / 1e9
        host_end = time.perf_counter_ns()
        self.marks.append((phase, self._wall0 + host_start - self._perf0, self._wall0 + host_end - self._perf0))
        return out


def conv_net(torch: Any) -> Any:
    from torch import nn

    torch.manual_seed(SEED)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


def run_canary(torch: Any, device: Device, matmul_size: int = 0, copy_bytes: int = 0,
               memory_cap: int = 2 * 1024**3) -> CanaryResult:
    """One canary run on `device`; a failure (OOM, wrong result, CUDA error) is a result, not an exception."""
    dtype, dtype_name = dtype_for(torch, device)
    n, copy = plan(device, matmul_size, copy_bytes, memory_cap, torch.tensor([], dtype=dtype).element_size())
    result = CanaryResult(device, success=False, dtype=dtype_name, sizes=(n, copy))
    target = torch.device("cuda", device.index) if device.kind == "cuda" else torch.device("cpu")
    timer = _Timer(torch, device)
    try:
        with torch.no_grad(), (torch.cuda.device(device.index) if device.kind == "cuda" else contextlib.nullcontext()):
            gen = torch.Generator().manual_seed(SEED)
            host = torch.randint(0, 256, (copy,), dtype=torch.uint8, generator=gen)
            if device.kind == "cuda":
                host = host.pin_memory()
            on_device = torch.empty_like(host, device=target)
            timer.run("h2d", lambda: on_device.copy_(host, non_blocking=True))
            on_gen = torch.Generator(device=target).manual_seed(SEED)  # generated where used: no n×n on the host
            a = torch.randn(n, n, generator=on_gen, device=target, dtype=torch.float32).to(dtype)
            b = torch.randn(n, n, generator=on_gen, device=target, dtype=torch.float32).to(dtype)
            c = torch.matmul(a, b)  # warm-up: kernel selection and cuBLAS workspace outside the timing

            def matmuls() -> Any:
                for _ in range(MATMUL_ITERS):
                    torch.matmul(a, b, out=c)
                return c

            timer.run("matmul", matmuls)
            net = conv_net(torch).to(target, dtype)
            images = torch.randn(CONV_BATCH, 3, CONV_SIZE, CONV_SIZE, generator=on_gen, device=target,
                                 dtype=torch.float32).to(dtype)
            net(images)  # warm-up (cuDNN algorithm choice)
            logits = timer.run("conv", lambda: net(images))
            copy2 = torch.empty_like(on_device)
            timer.run("d2d", lambda: copy2.copy_(on_device))
            back = torch.empty_like(host)
            timer.run("d2h", lambda: back.copy_(copy2, non_blocking=device.kind == "cuda"))
            if device.kind == "cuda":
                torch.cuda.synchronize(device.index)
            _verify(torch, a, b, c, logits, host, back)
    except Exception as err:  # noqa: BLE001 - OOM, CUDA errors, a wrong result: all are canary failures
        result.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        result.phases, result.marks = timer.seconds, timer.marks
        return result
    result.phases, result.marks = timer.seconds, timer.marks
    if timer.seconds.get("matmul"):
        result.matmul_flops = 2 * n**3 * MATMUL_ITERS / timer.seconds["matmul"]
    for direction, factor in (("h2d", 1), ("d2d", 2), ("d2h", 1)):  # d2d reads and writes: 2× the bytes in memory
        if timer.seconds.get(direction):
            result.copy[direction] = factor * copy / timer.seconds[direction]
    result.success = True
    return result


def _verify(torch: Any, a: Any, b: Any, c: Any, logits: Any, host: Any, back: Any) -> None:
    """The canary's numbers only count if its results are right: a corner of the matmul against a
    float64 reference, finite conv outputs, and the copies returning every byte."""
    reference = a[:8].double().cpu() @ b[:, :8].double().cpu()
    got = c[:8, :8].double().cpu()
    scale = float(reference.abs().max()) or 1.0
    error = float((got - reference).abs().max()) / scale
    tolerance = 1e-4 if a.dtype == torch.float32 else 2e-2
    if not math.isfinite(error) or error > tolerance:
        raise ArithmeticError(f"matmul result off by {error:.3g} (relative; tolerance {tolerance})")
    if not bool(torch.isfinite(logits).all()):
        raise ArithmeticError("conv forward produced non-finite values")
    if not torch.equal(host, back):
        raise ArithmeticError("host→device→host copy changed the data")
