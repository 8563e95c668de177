"""Per-pod GPU usage on shared GPUs (time-slicing, MPS): per-process NVML figures summed per container.

Pod values plus the per-GPU unattributed remainder add up to the device's figure:
`sum by (uuid) (gpulens_pod_gpu_sm_utilization_ratio) + on (uuid) gpulens_gpu_unattributed_sm_utilization_ratio`
equals `gpulens_gpu_utilization_ratio` (likewise memory utilization, encoder, decoder, memory used).
"""

from __future__ import annotations

from gpulens.metrics.family import GPU, POD, Family

GPU_POD = GPU + POD

SM_UTIL = Family("gpulens_pod_gpu_sm_utilization_ratio", "gauge",
                 "SM utilization of the container's processes on this GPU (nvmlDeviceGetProcessUtilization smUtil / 100).",
                 GPU_POD, "nvmlDeviceGetProcessUtilization", "pod", unit="ratio")
MEM_UTIL = Family("gpulens_pod_gpu_memory_utilization_ratio", "gauge",
                  "Memory-controller utilization of the container's processes (nvmlDeviceGetProcessUtilization memUtil / 100).",
                  GPU_POD, "nvmlDeviceGetProcessUtilization", "pod", unit="ratio")
ENC_UTIL = Family("gpulens_pod_gpu_encoder_utilization_ratio", "gauge",
                  "Encoder utilization of the container's processes (nvmlDeviceGetProcessUtilization encUtil / 100).",
                  GPU_POD, "nvmlDeviceGetProcessUtilization", "pod", unit="ratio")
DEC_UTIL = Family("gpulens_pod_gpu_decoder_utilization_ratio", "gauge",
                  "Decoder utilization of the container's processes (nvmlDeviceGetProcessUtilization decUtil / 100).",
                  GPU_POD, "nvmlDeviceGetProcessUtilization", "pod", unit="ratio")
MEM_USED = Family("gpulens_pod_gpu_memory_used_bytes", "gauge",
                  "GPU memory held by the container's processes (compute, graphics and MPS client processes).",
                  GPU_POD, "nvmlDeviceGetComputeRunningProcesses", "pod", unit="bytes")
UNATTRIBUTED_SM = Family("gpulens_gpu_unattributed_sm_utilization_ratio", "gauge",
                         "SM utilization of processes outside any pod or not yet resolved; pods + this = the device.", GPU, "", "pod",
                         unit="ratio")
UNATTRIBUTED_MEM_UTIL = Family("gpulens_gpu_unattributed_memory_utilization_ratio", "gauge",
                               "Memory-controller utilization not attributed to a pod; pods + this = the device.", GPU, "", "pod",
                               unit="ratio")
UNATTRIBUTED_ENC = Family("gpulens_gpu_unattributed_encoder_utilization_ratio", "gauge",
                          "Encoder utilization not attributed to a pod; pods + this = the device.", GPU, "", "pod", unit="ratio")
UNATTRIBUTED_DEC = Family("gpulens_gpu_unattributed_decoder_utilization_ratio", "gauge",
                          "Decoder utilization not attributed to a pod; pods + this = the device.", GPU, "", "pod", unit="ratio")
UNATTRIBUTED_MEM = Family("gpulens_gpu_unattributed_memory_used_bytes", "gauge",
                          "GPU memory of processes outside any pod or not yet resolved (and driver overhead); pods + this = the device.",
                          GPU, "", "pod", unit="bytes")
PROCESSES_VISIBLE = Family("gpulens_pod_attribution_processes_visible", "gauge",
                           "GPU processes whose /proc entry this exporter can read (0 without hostPID: no per-pod figures).",
                           (), "", "pod")
PROCESSES = Family("gpulens_pod_attribution_processes", "gauge",
                   "GPU processes by how they resolved: pod, not_in_pod, unknown_pod, unknown_container, exited, unreadable, "
                   "unknown_format, no_host_pid (all but pod count as unattributed).", ("result",), "", "pod")
API_UP = Family("gpulens_pod_attribution_api_up", "gauge",
                "1 if the last list or watch of this node's pods (Kubernetes API, fieldSelector spec.nodeName) succeeded.",
                (), "", "pod")
