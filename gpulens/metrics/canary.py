"""The GPU canary's families: a small torch workload per GPU, timed per phase, against expected figures."""

from __future__ import annotations

from gpulens.metrics.family import Family

DEVICE = ("gpu", "uuid", "device")  # device: cuda|cpu

SUCCESS = Family("gpulens_canary_success", "gauge", "1 if the last canary run on this GPU completed and verified its result.",
                 DEVICE, "", "canary")
PHASE_DURATION = Family("gpulens_canary_phase_duration_seconds", "gauge",
                        "Duration of the last canary run per phase (h2d|matmul|conv|d2h), CUDA events on GPU.",
                        DEVICE + ("phase",), "", "canary")
MATMUL_FLOPS = Family("gpulens_canary_matmul_flops_per_second", "gauge", "Achieved dense matmul FLOP/s in the last run.",
                      DEVICE + ("dtype",), "", "canary")
COPY_BYTES = Family("gpulens_canary_copy_bytes_per_second", "gauge", "Achieved host↔device copy rate in the last run (direction h2d|d2h).",
                    DEVICE + ("direction",), "", "canary")
MATMUL_RATIO = Family("gpulens_canary_matmul_expected_ratio", "gauge",
                      "Achieved matmul FLOP/s over the expected figure for this GPU model (absent for unknown models).",
                      DEVICE, "", "canary")
SKIPPED = Family("gpulens_canary_skipped_total", "counter", "Canary runs skipped, by reason (busy|no_device).",
                 DEVICE + ("reason",), "", "canary")
