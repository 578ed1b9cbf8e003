"""Vigil's exporters: the GPU exporter (NVML) and the service exporter (active probes)."""

__version__ = "0.1.0"
