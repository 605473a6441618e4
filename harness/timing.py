"""Device-synchronised timing windows with separate accumulators (train, eval, data, warm-up).

CUDA kernels run asynchronously, so a host clock read without a synchronisation measures when
work was queued, not when it finished. Every window boundary synchronises the device first,
then reads ``time.perf_counter``.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU, whose ops are synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Named accumulators of seconds; ``window(name)`` adds a synchronised interval to one."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def window(self, name: str, sync: bool = True) -> Iterator[None]:
        if sync:
            synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def get(self, name: str) -> float:
        return self.seconds.get(name, 0.0)
