"""The GPU exporter's families (NVML, MIG, GPM, events, pod attribution, self-health, DCGM names).

Each help text names its upstream source (the NVML call or field) so a series can be traced back
to where it came from.
"""

from __future__ import annotations

from gpulens.metrics.family import GPU, GPU_POD, MIG, POD, Family
from gpulens.metrics.self import COLLECTOR_DURATION, COLLECTOR_SUCCESS  # re-exported: the GPU exporter serves them

__all__ = ["COLLECTOR_DURATION", "COLLECTOR_SUCCESS", "GPU", "GPU_POD", "MIG", "POD", "Family", "families"]


def _g(name: str, help: str, labels: tuple[str, ...] = GPU_POD, source: str = "", sub: str = "gpu", unit: str = "") -> Family:
    return Family(name, "gauge", help, labels, source, sub, unit)


def _c(name: str, help: str, labels: tuple[str, ...] = GPU_POD, source: str = "", sub: str = "gpu", unit: str = "") -> Family:
    return Family(name, "counter", help, labels, source, sub, unit)


# --- identity and health -------------------------------------------------------------------------
GPU_INFO = Family(
    "gpulens_gpu_info", "gauge",
    "GPU identity, constant 1; join on uuid (nvmlDeviceGetName/PciInfo/Serial/VbiosVersion, driver and CUDA versions).",
    GPU + ("name", "pci_bus_id", "serial", "vbios_version", "driver_version", "cuda_version"),
    "nvmlDeviceGetName",
)
GPU_UP = _g("gpulens_gpu_up", "1 if the last sample of this GPU succeeded, 0 if NVML lost it (GpuIsLost).", GPU)
GPU_ALLOCATION = Family(
    "gpulens_gpu_allocation_info", "gauge",
    "Constant 1 per container holding the GPU or MIG instance uuid (kubelet PodResources); time-sliced GPUs list every holder.",
    ("gpu", "uuid", "resource") + POD, subsystem="gpu",
)

# --- utilization ---------------------------------------------------------------------------------
GPU_UTIL = _g("gpulens_gpu_utilization_ratio",
              "Fraction of the last sample period a kernel ran (nvmlDeviceGetUtilizationRates .gpu / 100); coarse, prefer GPM SM activity.",
              source="nvmlDeviceGetUtilizationRates", unit="ratio")
GPU_MEM_UTIL = _g("gpulens_gpu_memory_utilization_ratio",
                  "Fraction of the sample period device memory was read or written (nvmlDeviceGetUtilizationRates .memory / 100).",
                  source="nvmlDeviceGetUtilizationRates", unit="ratio")
GPU_ENC_UTIL = _g("gpulens_gpu_encoder_utilization_ratio", "Video encoder utilization (nvmlDeviceGetEncoderUtilization / 100).",
                  source="nvmlDeviceGetEncoderUtilization", unit="ratio")
GPU_DEC_UTIL = _g("gpulens_gpu_decoder_utilization_ratio", "Video decoder utilization (nvmlDeviceGetDecoderUtilization / 100).",
                  source="nvmlDeviceGetDecoderUtilization", unit="ratio")

# --- memory --------------------------------------------------------------------------------------
MEM_TOTAL = _g("gpulens_gpu_memory_total_bytes", "Framebuffer memory size (nvmlDeviceGetMemoryInfo v2 .total).",
               source="nvmlDeviceGetMemoryInfo", unit="bytes")
MEM_USED = _g("gpulens_gpu_memory_used_bytes", "Framebuffer memory allocated (nvmlDeviceGetMemoryInfo v2 .used).",
              source="nvmlDeviceGetMemoryInfo", unit="bytes")
MEM_FREE = _g("gpulens_gpu_memory_free_bytes", "Framebuffer memory free (nvmlDeviceGetMemoryInfo v2 .free).",
              source="nvmlDeviceGetMemoryInfo", unit="bytes")
MEM_RESERVED = _g("gpulens_gpu_memory_reserved_bytes", "Framebuffer memory reserved by the driver (nvmlDeviceGetMemoryInfo v2 .reserved).",
                  source="nvmlDeviceGetMemoryInfo", unit="bytes")

# --- thermal and power ---------------------------------------------------------------------------
TEMP = _g("gpulens_gpu_temperature_celsius", "GPU die temperature (nvmlDeviceGetTemperatureV, NVML_TEMPERATURE_GPU).",
          source="nvmlDeviceGetTemperatureV", unit="celsius")
MEM_TEMP = _g("gpulens_gpu_memory_temperature_celsius", "HBM memory temperature (field NVML_FI_DEV_MEMORY_TEMP).",
              source="nvmlDeviceGetFieldValues", unit="celsius")
POWER = _g("gpulens_gpu_power_usage_watts", "Board power draw (nvmlDeviceGetPowerUsage, mW/1000).",
           source="nvmlDeviceGetPowerUsage", unit="watts")
POWER_LIMIT = _g("gpulens_gpu_power_limit_watts", "Power management limit (nvmlDeviceGetPowerManagementLimit, mW/1000).",
                 source="nvmlDeviceGetPowerManagementLimit", unit="watts")
POWER_ENFORCED = _g("gpulens_gpu_enforced_power_limit_watts",
                    "Power limit the driver enforces, the lowest of all limiters (nvmlDeviceGetEnforcedPowerLimit, mW/1000).",
                    source="nvmlDeviceGetEnforcedPowerLimit", unit="watts")
ENERGY = _c("gpulens_gpu_energy_joules_total", "Energy since driver load (nvmlDeviceGetTotalEnergyConsumption, mJ/1000).",
            source="nvmlDeviceGetTotalEnergyConsumption", unit="joules")
FAN = _g("gpulens_gpu_fan_speed_ratio", "Intended fan speed (nvmlDeviceGetFanSpeed / 100); absent on passively cooled boards.",
         source="nvmlDeviceGetFanSpeed", unit="ratio")
PSTATE = _g("gpulens_gpu_performance_state", "Performance state, 0 (P0, max) to 15 (P15, min) (nvmlDeviceGetPerformanceState).",
            source="nvmlDeviceGetPerformanceState")

# --- clocks --------------------------------------------------------------------------------------
SM_CLOCK = _g("gpulens_gpu_sm_clock_hertz", "SM clock (nvmlDeviceGetClockInfo NVML_CLOCK_SM, MHz*1e6).", source="nvmlDeviceGetClockInfo",
              unit="hertz")
MEM_CLOCK = _g("gpulens_gpu_memory_clock_hertz", "Memory clock (nvmlDeviceGetClockInfo NVML_CLOCK_MEM, MHz*1e6).",
               source="nvmlDeviceGetClockInfo", unit="hertz")
SM_CLOCK_MAX = _g("gpulens_gpu_sm_clock_max_hertz", "Maximum SM clock (nvmlDeviceGetMaxClockInfo NVML_CLOCK_SM).",
                  source="nvmlDeviceGetMaxClockInfo", unit="hertz")
MEM_CLOCK_MAX = _g("gpulens_gpu_memory_clock_max_hertz", "Maximum memory clock (nvmlDeviceGetMaxClockInfo NVML_CLOCK_MEM).",
                   source="nvmlDeviceGetMaxClockInfo", unit="hertz")
CLOCK_EVENT = Family(
    "gpulens_gpu_clock_event_active", "gauge",
    "1 while this reason holds clocks down, one series per reason (nvmlDeviceGetCurrentClocksEventReasons bitmask).",
    GPU_POD + ("reason",), "nvmlDeviceGetCurrentClocksEventReasons",
)

# --- PCIe ----------------------------------------------------------------------------------------
PCIE_GEN = _g("gpulens_gpu_pcie_link_generation", "Current PCIe link generation (nvmlDeviceGetCurrPcieLinkGeneration).",
              source="nvmlDeviceGetCurrPcieLinkGeneration")
PCIE_WIDTH = _g("gpulens_gpu_pcie_link_width", "Current PCIe link width in lanes (nvmlDeviceGetCurrPcieLinkWidth).",
                source="nvmlDeviceGetCurrPcieLinkWidth")
PCIE_GEN_MAX = _g("gpulens_gpu_pcie_link_max_generation", "Maximum PCIe link generation (nvmlDeviceGetMaxPcieLinkGeneration).",
                  source="nvmlDeviceGetMaxPcieLinkGeneration")
PCIE_WIDTH_MAX = _g("gpulens_gpu_pcie_link_max_width", "Maximum PCIe link width (nvmlDeviceGetMaxPcieLinkWidth).",
                    source="nvmlDeviceGetMaxPcieLinkWidth")
PCIE_REPLAY = _c("gpulens_gpu_pcie_replays_total", "PCIe replays, a sign of a bad link (nvmlDeviceGetPcieReplayCounter).",
                 source="nvmlDeviceGetPcieReplayCounter")
PCIE_TX = _c("gpulens_gpu_pcie_transmit_bytes_total", "Bytes sent over PCIe (field NVML_FI_DEV_PCIE_COUNT_TX_BYTES).",
             source="nvmlDeviceGetFieldValues", unit="bytes")
PCIE_RX = _c("gpulens_gpu_pcie_receive_bytes_total", "Bytes received over PCIe (field NVML_FI_DEV_PCIE_COUNT_RX_BYTES).",
             source="nvmlDeviceGetFieldValues", unit="bytes")

# --- memory errors -------------------------------------------------------------------------------
ECC = Family(
    "gpulens_gpu_ecc_errors_total", "counter",
    "ECC errors by type (corrected|uncorrected) and scope (volatile: since driver load, aggregate: lifetime) "
    "(nvmlDeviceGetTotalEccErrors).",
    GPU_POD + ("type", "scope"), "nvmlDeviceGetTotalEccErrors",
)
RETIRED_PAGES = Family(
    "gpulens_gpu_retired_pages", "gauge",
    "Framebuffer pages retired, by cause (multiple_single_bit|double_bit) (nvmlDeviceGetRetiredPages; pre-Ampere boards).",
    GPU_POD + ("cause",), "nvmlDeviceGetRetiredPages",
)
REMAPPED_ROWS = Family(
    "gpulens_gpu_remapped_rows_total", "counter",
    "Memory rows remapped, by type (correctable|uncorrectable) (nvmlDeviceGetRemappedRows; Ampere+).",
    GPU_POD + ("type",), "nvmlDeviceGetRemappedRows",
)
ROW_REMAP_PENDING = _g("gpulens_gpu_row_remap_pending",
                       "1 if a row remap is pending and the GPU needs a reset (nvmlDeviceGetRemappedRows).",
                       source="nvmlDeviceGetRemappedRows")
ROW_REMAP_FAILURE = _g("gpulens_gpu_row_remap_failure", "1 if a row remap failed: the GPU should be replaced (nvmlDeviceGetRemappedRows).",
                       source="nvmlDeviceGetRemappedRows")

# --- NVLink: per-GPU totals by default (7 series per GPU); per-link detail with --nvlink-per-link ---
NVLINK_LINKS = _g("gpulens_gpu_nvlink_links", "NVLink links this GPU has (field NVML_FI_DEV_NVLINK_LINK_COUNT).",
                  source="nvmlDeviceGetFieldValues")
NVLINK_LINKS_UP = _g("gpulens_gpu_nvlink_links_up", "NVLink links currently active (nvmlDeviceGetNvLinkState, counted over links).",
                     source="nvmlDeviceGetNvLinkState")
NVLINK_TX = _c("gpulens_gpu_nvlink_transmit_bytes_total",
               "NVLink data bytes sent, summed over links (field NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, KiB*1024).",
               source="nvmlDeviceGetFieldValues", unit="bytes")
NVLINK_RX = _c("gpulens_gpu_nvlink_receive_bytes_total",
               "NVLink data bytes received, summed over links (field NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, KiB*1024).",
               source="nvmlDeviceGetFieldValues", unit="bytes")
NVLINK_ERRORS = Family("gpulens_gpu_nvlink_errors_total", "counter",
                       "NVLink errors by type (replay|recovery|crc_flit), summed over links (nvmlDeviceGetNvLinkErrorCounter).",
                       GPU_POD + ("type",), "nvmlDeviceGetNvLinkErrorCounter")
NVLINK_UP = Family("gpulens_gpu_nvlink_up", "gauge",
                   "1 if the NVLink link is active, per link; with --nvlink-per-link (nvmlDeviceGetNvLinkState).",
                   GPU_POD + ("link",), "nvmlDeviceGetNvLinkState")
NVLINK_LINK_TX = Family("gpulens_gpu_nvlink_link_transmit_bytes_total", "counter",
                        "NVLink data bytes sent per link; with --nvlink-per-link (field NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, KiB*1024).",
                        GPU_POD + ("link",), "nvmlDeviceGetFieldValues", unit="bytes")
NVLINK_LINK_RX = Family("gpulens_gpu_nvlink_link_receive_bytes_total", "counter",
                        "NVLink data bytes received per link; with --nvlink-per-link "
                        "(field NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, KiB*1024).",
                        GPU_POD + ("link",), "nvmlDeviceGetFieldValues", unit="bytes")
NVLINK_LINK_ERRORS = Family("gpulens_gpu_nvlink_link_errors_total", "counter",
                            "NVLink errors per link by type; with --nvlink-per-link (nvmlDeviceGetNvLinkErrorCounter).",
                            GPU_POD + ("link", "type"), "nvmlDeviceGetNvLinkErrorCounter")

# --- processes (opt-in: needs hostPID) -----------------------------------------------------------
PROCESS_MEMORY = Family("gpulens_gpu_process_memory_used_bytes", "gauge",
                        "GPU memory used per compute process (nvmlDeviceGetComputeRunningProcesses .usedGpuMemory); opt-in.",
                        GPU_POD + ("pid",), "nvmlDeviceGetComputeRunningProcesses", unit="bytes")

# --- MIG -----------------------------------------------------------------------------------------
MIG_MODE = _g("gpulens_gpu_mig_mode", "1 if MIG mode is enabled on the GPU (nvmlDeviceGetMigMode current).", GPU, "nvmlDeviceGetMigMode")
MIG_INFO = Family("gpulens_mig_info", "gauge",
                  "MIG instance identity, constant 1; uuid is the MIG uuid, parent_uuid the GPU's (nvmlDeviceGetMigDeviceHandleByIndex).",
                  ("gpu", "uuid", "parent_uuid", "gpu_instance_id", "compute_instance_id", "mig_profile"),
                  "nvmlDeviceGetMigDeviceHandleByIndex", "mig")
MIG_MEM_TOTAL = Family("gpulens_mig_memory_total_bytes", "gauge", "MIG instance memory size (nvmlDeviceGetMemoryInfo on the MIG handle).",
                       MIG, "nvmlDeviceGetMemoryInfo", "mig", unit="bytes")
MIG_MEM_USED = Family("gpulens_mig_memory_used_bytes", "gauge",
                      "MIG instance memory allocated (nvmlDeviceGetMemoryInfo on the MIG handle).",
                      MIG, "nvmlDeviceGetMemoryInfo", "mig", unit="bytes")

# --- GPM (Hopper+): real activity, per GPU and per MIG instance ----------------------------------
# `gpu_instance_id` is empty for whole-GPU series; uuid is the MIG uuid for instance series.
GPM_LABELS = ("gpu", "uuid", "gpu_instance_id") + POD


def _gpm(name: str, help: str, unit: str = "") -> Family:
    return Family(name, "gauge", help + " (NVML GPM, nvmlGpmMetricsGet).", GPM_LABELS, "nvmlGpmMetricsGet", "gpm", unit)


GPM_GRAPHICS = _gpm("gpulens_gpu_graphics_activity_ratio", "Fraction of time the graphics engine was active", unit="ratio")
GPM_SM = _gpm("gpulens_gpu_sm_activity_ratio", "Fraction of SM cycles with at least one warp resident, averaged over SMs", unit="ratio")
GPM_SM_OCC = _gpm("gpulens_gpu_sm_occupancy_ratio", "Resident warps over the maximum, averaged over SMs", unit="ratio")
GPM_TENSOR = _gpm("gpulens_gpu_tensor_pipe_activity_ratio", "Fraction of cycles any tensor pipe was active", unit="ratio")
GPM_FP16 = _gpm("gpulens_gpu_fp16_pipe_activity_ratio", "Fraction of cycles the FP16 pipe was active", unit="ratio")
GPM_FP32 = _gpm("gpulens_gpu_fp32_pipe_activity_ratio", "Fraction of cycles the FP32 pipe was active", unit="ratio")
GPM_FP64 = _gpm("gpulens_gpu_fp64_pipe_activity_ratio", "Fraction of cycles the FP64 pipe was active", unit="ratio")
GPM_DRAM = _gpm("gpulens_gpu_dram_bandwidth_utilization_ratio", "DRAM bandwidth used over the peak", unit="ratio")
GPM_PCIE_TX = _gpm("gpulens_gpu_pcie_transmit_rate_bytes_per_second", "PCIe transmit rate over the GPM window", unit="bytes_per_second")
GPM_PCIE_RX = _gpm("gpulens_gpu_pcie_receive_rate_bytes_per_second", "PCIe receive rate over the GPM window", unit="bytes_per_second")
GPM_NVLINK_TX = _gpm("gpulens_gpu_nvlink_transmit_rate_bytes_per_second", "NVLink transmit rate, all links, over the GPM window",
                     unit="bytes_per_second")
GPM_NVLINK_RX = _gpm("gpulens_gpu_nvlink_receive_rate_bytes_per_second", "NVLink receive rate, all links, over the GPM window",
                     unit="bytes_per_second")

# --- XID and other NVML events ---------------------------------------------------------------------
XID_ERRORS = Family("gpulens_gpu_xid_errors_total", "counter",
                    "XID critical errors by code (nvmlEventSetWait_v2, nvmlEventTypeXidCriticalError .eventData).",
                    GPU + ("xid",), "nvmlEventSetWait_v2", "xid")
XID_LAST = Family("gpulens_gpu_xid_last_timestamp_seconds", "gauge",
                  "Unix time the last XID of this code was seen on this GPU.", GPU + ("xid",), "nvmlEventSetWait_v2", "xid", unit="seconds")
GPU_EVENTS = Family("gpulens_gpu_events_total", "counter",
                    "NVML events by type (xid|single_bit_ecc|double_bit_ecc|clock|power_source|…) (nvmlEventSetWait_v2).",
                    GPU + ("type",), "nvmlEventSetWait_v2", "xid")
EVENTS_UP = Family("gpulens_nvml_events_up", "gauge", "1 while the NVML event watcher is registered and waiting.", (), subsystem="self")

# --- self-health ---------------------------------------------------------------------------------
NVML_UP = Family("gpulens_nvml_up", "gauge", "1 if NVML is initialised and answering (nvmlInit), 0 while retrying.", (), "nvmlInit", "self")
NVML_ERRORS = Family("gpulens_nvml_errors_total", "counter",
                     "NVML call failures by function and NVMLError name; NotSupported is counted once per GPU and function.",
                     ("function", "error"), subsystem="self")
SAMPLE_DURATION = Family("gpulens_gpu_sample_duration_seconds", "histogram", "Time to read every GPU once (one sampler cycle).",
                         (), subsystem="self", unit="seconds")
SAMPLE_AGE = Family("gpulens_gpu_sample_age_seconds", "gauge",
                    "Seconds since the snapshot being served was taken; grows if NVML hangs.", (), subsystem="self", unit="seconds")
BUILD_INFO = Family("gpulens_build_info", "gauge", "Constant 1, labelled with the gpulens version and the NVML source.",
                    ("version", "python_version", "nvml"), subsystem="self")
PODRES_UP = Family("gpulens_podresources_up", "gauge", "1 if the last kubelet PodResources List() succeeded.", (), subsystem="podresources")
PODRES_LAST_SUCCESS = Family("gpulens_podresources_last_success_timestamp_seconds", "gauge",
                             "Unix time of the last successful PodResources List(); pod labels are as of then.", (),
                             subsystem="podresources", unit="seconds")
PODRES_DURATION = Family("gpulens_podresources_refresh_duration_seconds", "gauge", "Duration of the last PodResources List().",
                         (), subsystem="podresources", unit="seconds")
PODRES_ERRORS = Family("gpulens_podresources_refresh_errors_total", "counter",
                       "Failed PodResources List() calls by gRPC status (unavailable, deadline_exceeded, …).", ("reason",),
                       subsystem="podresources")
PODRES_PODS = Family("gpulens_podresources_pods", "gauge", "Pods on this node holding at least one GPU or MIG device.", (),
                     subsystem="podresources")

# --- DCGM-compatible names (--compat dcgm): DCGM's units and label style, for drop-in migration ----
DCGM_LABELS = ("gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id", "GPU_I_ID", "GPU_I_PROFILE") + POD


def _dcgm(name: str, help: str) -> Family:
    # Typed gauge even where DCGM says counter: DCGM's counter names lack `_total`, and keeping the
    # name unchanged is the point of compat mode (PromQL rate() does not look at the type).
    return Family(name, "gauge", help, DCGM_LABELS, subsystem="dcgm")


DCGM_GPU_UTIL = _dcgm("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
DCGM_ENC_UTIL = _dcgm("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).")
DCGM_DEC_UTIL = _dcgm("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).")
DCGM_MEM_COPY_UTIL = _dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).")
DCGM_FB_USED = _dcgm("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
DCGM_FB_FREE = _dcgm("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
DCGM_GPU_TEMP = _dcgm("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
DCGM_MEMORY_TEMP = _dcgm("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).")
DCGM_POWER_USAGE = _dcgm("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
DCGM_ENERGY = _dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).")
DCGM_SM_CLOCK = _dcgm("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).")
DCGM_MEM_CLOCK = _dcgm("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).")
DCGM_PCIE_REPLAY = _dcgm("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.")
DCGM_XID = _dcgm("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.")
DCGM_UNC_REMAP = _dcgm("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for uncorrectable errors.")
DCGM_COR_REMAP = _dcgm("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for correctable errors.")
DCGM_REMAP_FAILURE = _dcgm("DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether remapping of rows has failed.")
# DCGM profiling fields, from NVML GPM where it measures the same quantity (Hopper+; per GPU and MIG instance).
DCGM_PROF_GR_ENGINE = _dcgm("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.")
DCGM_PROF_SM_ACTIVE = _dcgm("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned.")
DCGM_PROF_SM_OCCUPANCY = _dcgm("DCGM_FI_PROF_SM_OCCUPANCY", "The ratio of number of warps resident on an SM.")
DCGM_PROF_TENSOR = _dcgm("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor (HMMA) pipe is active.")
DCGM_PROF_DRAM = _dcgm("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active sending or receiving data.")
DCGM_PROF_FP64 = _dcgm("DCGM_FI_PROF_PIPE_FP64_ACTIVE", "Ratio of cycles the fp64 pipes are active.")
DCGM_PROF_FP32 = _dcgm("DCGM_FI_PROF_PIPE_FP32_ACTIVE", "Ratio of cycles the fp32 pipes are active.")
DCGM_PROF_FP16 = _dcgm("DCGM_FI_PROF_PIPE_FP16_ACTIVE", "Ratio of cycles the fp16 pipes are active.")
DCGM_PROF_PCIE_TX = _dcgm("DCGM_FI_PROF_PCIE_TX_BYTES", "The rate of data transmitted over the PCIe bus - including both "
                                                        "protocol headers and data payloads - in bytes per second.")
DCGM_PROF_PCIE_RX = _dcgm("DCGM_FI_PROF_PCIE_RX_BYTES", "The rate of data received over the PCIe bus - including both protocol "
                                                        "headers and data payloads - in bytes per second.")
DCGM_PROF_NVLINK_TX = _dcgm("DCGM_FI_PROF_NVLINK_TX_BYTES", "The rate of data transmitted over NVLink, not including protocol "
                                                            "headers, in bytes per second.")
DCGM_PROF_NVLINK_RX = _dcgm("DCGM_FI_PROF_NVLINK_RX_BYTES", "The rate of data received over NVLink, not including protocol "
                                                            "headers, in bytes per second.")


def families() -> list[Family]:
    """Every family the GPU exporter can export, in definition order (README table, golden and drift tests)."""
    return [v for v in globals().values() if isinstance(v, Family)]
