"""Timing one operation right: warm-up, device synchronisation, median of repeats, spread.

On CUDA each repeat is bracketed by CUDA events (device time, no host launch gaps counted
at the ends); elsewhere by ``time.perf_counter`` after a device synchronisation. Each repeat
runs the operation ``num_inner`` times back to back, chosen from a calibration call so that a
repeat lasts at least ``min_repeat_s``: short kernels are otherwise dominated by timer and
launch overhead.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

__all__ = ["Timing", "synchronize", "time_op"]


@dataclass(frozen=True)
class Timing:
    """Per-call times of one operation, in seconds.

    Attributes:
        median_s: Median over repeats of the per-call time (the reported figure).
        min_s: Fastest repeat.
        max_s: Slowest repeat.
        iqr_s: Interquartile range of the repeats (the spread).
        num_repeats: Timed repeats.
        num_inner: Calls per repeat.
        num_warmup: Untimed warm-up calls (plus one calibration call).
        method: ``cuda_event`` or ``perf_counter``.
        repeats_s: Every repeat's per-call time.
    """

    median_s: float
    min_s: float
    max_s: float
    iqr_s: float
    num_repeats: int
    num_inner: int
    num_warmup: int
    method: str
    repeats_s: tuple[float, ...]

    @property
    def spread_rel(self) -> float:
        """IQR over median: 0.05 means the middle half of repeats lies within 5 %."""
        return self.iqr_s / self.median_s if self.median_s > 0 else math.nan

    def as_dict(self) -> dict:
        """Flat record with units in the keys (``time_median_s``, ...)."""
        d = asdict(self)
        return {
            "time_median_s": d["median_s"],
            "time_min_s": d["min_s"],
            "time_max_s": d["max_s"],
            "time_iqr_s": d["iqr_s"],
            "spread_rel": self.spread_rel,
            "num_repeats": d["num_repeats"],
            "num_inner": d["num_inner"],
            "num_warmup": d["num_warmup"],
            "timing_method": d["method"],
        }


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no MPS here
        torch.mps.synchronize()


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def time_op(
    fn: Callable[[], object],
    device: torch.device,
    *,
    num_warmup: int = 2,
    num_repeats: int = 5,
    min_repeat_s: float = 0.05,
    max_inner: int = 10_000,
) -> Timing:
    """Time ``fn`` on ``device``.

    Args:
        fn: The operation, closed over preallocated inputs and outputs.
        device: Where it runs; decides CUDA events versus ``perf_counter``.
        num_warmup: Untimed calls first (allocator, cuBLAS/oneDNN heuristics, caches, clocks).
        num_repeats: Timed repeats; the median is reported.
        min_repeat_s: Each repeat runs ``fn`` enough times to last at least this long.
        max_inner: Upper bound on calls per repeat.

    Returns:
        The :class:`Timing`.
    """
    if num_repeats < 1:
        raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
    device = torch.device(device)
    for _ in range(max(0, num_warmup)):
        fn()
    synchronize(device)

    # Calibration call: decides how many calls make one repeat last min_repeat_s.
    start = time.perf_counter()
    fn()
    synchronize(device)
    one_s = max(time.perf_counter() - start, 1e-9)
    num_inner = int(min(max_inner, max(1, math.ceil(min_repeat_s / one_s))))

    use_events = device.type == "cuda"
    repeats: list[float] = []
    for _ in range(num_repeats):
        if use_events:
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(num_inner):
                fn()
            end.record()
            end.synchronize()
            elapsed_s = begin.elapsed_time(end) / 1e3  # elapsed_time is in ms
        else:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(num_inner):
                fn()
            synchronize(device)
            elapsed_s = time.perf_counter() - start
        repeats.append(elapsed_s / num_inner)

    ordered = sorted(repeats)
    return Timing(
        median_s=statistics.median(ordered),
        min_s=ordered[0],
        max_s=ordered[-1],
        iqr_s=_quantile(ordered, 0.75) - _quantile(ordered, 0.25),
        num_repeats=num_repeats,
        num_inner=num_inner,
        num_warmup=num_warmup,
        method="cuda_event" if use_events else "perf_counter",
        repeats_s=tuple(repeats),
    )
