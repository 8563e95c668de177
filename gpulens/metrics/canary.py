"""The GPU canary's families: a small torch workload per GPU, timed per phase, against expected figures."""

from __future__ import annotations

from gpulens.metrics.family import Family

DEVICE = ("gpu", "uuid", "device")  # device: cuda|cpu

SUCCESS = Family("gpulens_canary_success", "gauge", "1 if the last canary run on this GPU completed and verified its result.",
                 DEVICE, "", "canary")
PHASE_DURATION = Family("gpulens_canary_phase_duration_seconds", "gauge",
                        "Duration of the last canary run per phase (h2d|matmul|conv|d2d|d2h), CUDA events on GPU.",
                        DEVICE + ("phase",), "", "canary")
MATMUL_FLOPS = Family("gpulens_canary_matmul_flops_per_second", "gauge", "Achieved dense matmul FLOP/s in the last run.",
                      DEVICE + ("dtype",), "", "canary")
COPY_BYTES = Family("gpulens_canary_copy_bytes_per_second", "gauge",
                    "Achieved copy rate in the last run (direction h2d|d2h over PCIe, d2d in device memory, read+write).",
                    DEVICE + ("direction",), "", "canary")
MATMUL_RATIO = Family("gpulens_canary_matmul_expected_ratio", "gauge",
                      "Achieved matmul FLOP/s over the expected figure for this GPU model (absent for unknown models).",
                      DEVICE, "", "canary")
SKIPPED = Family("gpulens_canary_skipped_total", "counter", "Canary runs skipped, by reason (busy|no_device).",
                 DEVICE + ("reason",), "", "canary")
COPY_RATIO = Family("gpulens_canary_copy_expected_ratio", "gauge",
                    "Achieved copy rate over the expected figure for this GPU model and direction (absent for unknown models).",
                    DEVICE + ("direction",), "", "canary")
LAST_RUN = Family("gpulens_canary_last_run_timestamp_seconds", "gauge", "When the canary last ran on this GPU (success or not).",
                  DEVICE, "", "canary")
