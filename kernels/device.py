"""Device naming: a stable human name per device, and a file-name-safe slug of it."""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

import torch

__all__ = ["device_name", "device_slug", "cpu_model_name"]


@functools.lru_cache(maxsize=1)
def cpu_model_name() -> str:
    """The CPU model name, e.g. ``"AMD EPYC 7763 64-Core Processor"``.

    Read from ``/proc/cpuinfo`` (Linux: ``model name``, or ``Hardware``/``Processor`` on ARM),
    falling back to :func:`platform.processor` and then :func:`platform.machine`. Cached, so it
    is stable across calls within a process.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            text = cpuinfo.read_text(errors="replace")
        except OSError:
            text = ""
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            match = re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.MULTILINE)
            if match and match.group(1).strip():
                return " ".join(match.group(1).split())
    name = platform.processor() or platform.machine()
    return " ".join(name.split()) or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """A human-readable, stable name for ``device``.

    Args:
        device: A torch device (``cuda``, ``cuda:1``, ``cpu``, ...).

    Returns:
        CUDA: ``torch.cuda.get_device_name`` (e.g. ``"NVIDIA H100 80GB HBM3"``), the string the
        datasheet table (:mod:`kernels.peaks`) matches on. CPU: the CPU model name. Other
        device types: the type followed by the host's CPU model name.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    if device.type == "cpu":
        return cpu_model_name()
    return f"{device.type} ({cpu_model_name()})"


def device_slug(name: str) -> str:
    """Lowercase, file-name-safe slug: ``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown-device"
