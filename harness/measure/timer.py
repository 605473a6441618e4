"""Device-synchronised clock reads, the base of every measurement window.

CUDA kernels run asynchronously, so a host clock read without a synchronisation measures when
work was queued, not when it finished. Every window boundary synchronises the device first,
then reads ``time.perf_counter``.
"""
from __future__ import annotations

import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU, whose ops are synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced_now(device: torch.device) -> float:
    """``time.perf_counter()`` after the device has finished its queued work."""
    synchronize(device)
    return time.perf_counter()
