"""Per-pod GPU usage on shared GPUs (time-slicing, MPS): per-process NVML figures summed per container.

Pod values plus the per-GPU unattributed remainder add up to the device's figure.
"""

from __future__ import annotations

from gpulens.metrics.family import GPU, POD, Family

GPU_POD = GPU + POD

SM_UTIL = Family("gpulens_pod_gpu_sm_utilization_ratio", "gauge",
                 "SM utilization of the container's processes on this GPU (nvmlDeviceGetProcessUtilization smUtil / 100).",
                 GPU_POD, "nvmlDeviceGetProcessUtilization", "pod")
MEM_UTIL = Family("gpulens_pod_gpu_memory_utilization_ratio", "gauge",
                  "Memory-controller utilization of the container's processes (nvmlDeviceGetProcessUtilization memUtil / 100).",
                  GPU_POD, "nvmlDeviceGetProcessUtilization", "pod")
ENC_UTIL = Family("gpulens_pod_gpu_encoder_utilization_ratio", "gauge", "Encoder utilization of the container's processes.",
                  GPU_POD, "nvmlDeviceGetProcessUtilization", "pod")
DEC_UTIL = Family("gpulens_pod_gpu_decoder_utilization_ratio", "gauge", "Decoder utilization of the container's processes.",
                  GPU_POD, "nvmlDeviceGetProcessUtilization", "pod")
MEM_USED = Family("gpulens_pod_gpu_memory_used_bytes", "gauge",
                  "GPU memory held by the container's processes (compute, graphics and MPS client processes).",
                  GPU_POD, "nvmlDeviceGetComputeRunningProcesses", "pod")
UNATTRIBUTED_SM = Family("gpulens_gpu_unattributed_sm_utilization_ratio", "gauge",
                         "SM utilization of processes outside any pod or not yet resolved; pods + this = the device.", GPU, "", "pod")
UNATTRIBUTED_MEM = Family("gpulens_gpu_unattributed_memory_used_bytes", "gauge",
                          "GPU memory of processes outside any pod or not yet resolved.", GPU, "", "pod")
PROCESSES_VISIBLE = Family("gpulens_pod_attribution_processes_visible", "gauge",
                           "GPU processes whose /proc entry this exporter can read (0 without hostPID: no per-pod figures).",
                           (), "", "pod")
