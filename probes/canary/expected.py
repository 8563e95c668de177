"""Expected figures per GPU model, so a canary result reads as a ratio: ≈1 healthy, well below 1 degraded.

Peaks are NVIDIA's datasheet figures (dense, i.e. without 2:4 sparsity). What a well-tuned large
matmul reaches is ~80–87 % of the tensor-core peak, a device-to-device copy ~85–90 % of the memory
bandwidth, and a pinned host↔device copy ~80 % of the PCIe link's per-direction rate, so the
expected figure is the peak times the lower end of those (MATMUL_EFFICIENCY, …). A GPU with slow
clocks, a power cap or a link trained down to a lower generation/width falls clearly below 1; a
spread of ~5 % between healthy GPUs of one node is normal. Unknown models get no ratio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MATMUL_EFFICIENCY = 0.80
HBM_EFFICIENCY = 0.85
PCIE_EFFICIENCY = 0.80
PCIE_X16_GBPS = {3: 15.75, 4: 31.5, 5: 63.0}  # per direction, after 128b/130b encoding


@dataclass(frozen=True)
class Expected:
    model: str
    pattern: str  # regex on the NVML / torch device name
    matmul_tflops: float  # dense peak for `dtype`
    dtype: str  # bf16, or fp16 where the board has no fast bf16 (T4)
    memory_gbps: float  # memory bandwidth, GB/s
    pcie_gen: int
    source: str

    def matmul_flops(self) -> float:
        return self.matmul_tflops * 1e12 * MATMUL_EFFICIENCY

    def copy_bytes_per_second(self, direction: str) -> float:
        if direction == "d2d":
            return self.memory_gbps * 1e9 * HBM_EFFICIENCY
        return PCIE_X16_GBPS[self.pcie_gen] * 1e9 * PCIE_EFFICIENCY


# Most specific first: "H100 PCIe" before "H100", "A100" before "A10", "L40S" before "L4".
TABLE: tuple[Expected, ...] = (
    Expected("H200", r"H200", 989, "bf16", 4800, 5, "NVIDIA H200 Tensor Core GPU datasheet (SXM: 1,979 TFLOPS BF16 with sparsity)"),
    Expected("H100 PCIe", r"H100.*PCIe", 756, "bf16", 2000, 5, "NVIDIA H100 datasheet, PCIe column (1,513 with sparsity)"),
    Expected("H100 NVL", r"H100 NVL", 835, "bf16", 3900, 5, "NVIDIA H100 datasheet, NVL column (1,671 with sparsity)"),
    Expected("H100 SXM", r"H100", 989, "bf16", 3350, 5, "NVIDIA H100 datasheet, SXM column (1,979 with sparsity)"),
    Expected("A100 80GB", r"A100.*80GB", 312, "bf16", 1935, 4,
             "NVIDIA A100 datasheet (624 with sparsity; 80GB PCIe 1,935 GB/s, SXM 2,039)"),
    Expected("A100 40GB", r"A100", 312, "bf16", 1555, 4, "NVIDIA A100 datasheet (40GB: 1,555 GB/s)"),
    Expected("L40S", r"L40S", 362, "bf16", 864, 4, "NVIDIA L40S datasheet (733 with sparsity)"),
    Expected("L4", r"\bL4\b", 121, "bf16", 300, 4, "NVIDIA L4 datasheet (242 with sparsity)"),
    Expected("A10", r"\bA10\b", 125, "bf16", 600, 4, "NVIDIA A10 datasheet (250 with sparsity)"),
    Expected("T4", r"\bT4\b", 65, "fp16", 320, 3, "NVIDIA T4 datasheet: 65 TFLOPS FP16 mixed precision; no fast BF16"),
)


def lookup(device_name: str) -> Expected | None:
    """The expected figures for a device name such as 'NVIDIA H100 80GB HBM3', or None if unknown."""
    for row in TABLE:
        if re.search(row.pattern, device_name):
            return row
    return None
