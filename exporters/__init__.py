"""Collectors: NVML GPUs, kubelet pod attribution and the rest."""
