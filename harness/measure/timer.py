"""Device-synchronised clock reads, the base of every measurement window.

CUDA kernels run asynchronously, so a host clock read without a synchronisation measures when
work was queued, not when it finished. Every window boundary synchronises the device first,
then reads ``time.perf_counter``.
"""
from __future__ import annotations

import torch


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU, whose ops are synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

