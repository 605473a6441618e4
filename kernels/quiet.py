"""Measure until quiet: repeat the sweep until its GEMM spread is small and the host was free.

One attempt is one run of the measurement function between two host snapshots
(:mod:`common.host`). It is quiet when every dtype's best GEMM has a spread (IQR / median of its
repeats) at most ``max_spread_rel`` and, on a CPU device, other processes and the hypervisor
left the CPUs alone over the attempt (``host_other_cpu_share`` and ``host_steal_share`` at most
their thresholds). A small spread alone is not enough: one 2-core VM gave 348 and then
96 GFLOP/s, both with a 4.5 % spread, because the second run shared the CPUs all along.

The measurement function, the snapshot reader, the clock and the sleep are all arguments, so
the loop is tested without real contention.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from common import host

__all__ = ["Attempt", "QuietOutcome", "gemm_spreads", "judge", "measure_until_quiet"]


@dataclass
class Attempt:
    """One measurement and the host conditions over it.

    Attributes:
        records: What the measurement function returned (kernels.bench records).
        measured_at: UTC ISO time the attempt started.
        conditions: :func:`common.host.conditions` over the attempt, plus
            ``host_load_avg_start`` / ``host_load_avg_end``.
        spreads: Best-GEMM spread per dtype.
        quiet: Whether it passed every criterion.
        reason: One line on why not (None when quiet).
    """

    records: list[dict[str, Any]]
    measured_at: str
    conditions: dict[str, Any]
    spreads: dict[str, Optional[float]]
    quiet: bool
    reason: Optional[str]

    def summary(self) -> dict[str, Any]:
        """The attempt without its records, for the profile's ``quiet_attempts``."""
        best = {}
        for dtype in self.spreads:
            gemms = [r for r in self.records if r.get("op") == "gemm" and r.get("dtype") == dtype and r.get("flops_per_s")]
            best[dtype] = max(r["flops_per_s"] for r in gemms) if gemms else None
        return {
            "measured_at": self.measured_at,
            "quiet": self.quiet,
            "quiet_reason": self.reason,
            "gemm_flops_per_s": best,
            "gemm_spread_rel": self.spreads,
            **{k: self.conditions.get(k) for k in (
                "process_cpu_share", "host_other_cpu_share", "host_steal_share", "contended",
                "host_load_avg_start", "host_load_avg_end")},
        }


@dataclass
class QuietOutcome:
    """The attempt to report and every attempt made."""

    chosen: Attempt
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        return self.chosen.quiet


def gemm_spreads(records: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Per dtype, the spread of the GEMM shape with the best FLOP/s (the one the profile reports)."""
    spreads: dict[str, Optional[float]] = {}
    for dtype in dict.fromkeys(r.get("dtype") for r in records if r.get("op") == "gemm"):
        gemms = [r for r in records if r.get("op") == "gemm" and r.get("dtype") == dtype and r.get("flops_per_s")]
        if gemms:
            spread = max(gemms, key=lambda r: r["flops_per_s"]).get("spread_rel")
            spreads[dtype] = None if spread is None or (isinstance(spread, float) and math.isnan(spread)) else spread
    return spreads


def judge(
    spreads: dict[str, Optional[float]], conditions: dict[str, Any], *, max_spread_rel: float, check_host: bool
) -> tuple[bool, Optional[str]]:
    """Quiet or not, and one line saying why not."""
    reasons = []
    if not spreads:
        reasons.append("no GEMM was measured")
    noisy = {d: s for d, s in spreads.items() if s is None or s > max_spread_rel}
    if noisy:
        text = ", ".join(f"{d} {'unknown' if s is None else f'{s:.1%}'}" for d, s in noisy.items())
        reasons.append(f"GEMM spread {text} above {max_spread_rel:.1%}")
    if check_host:
        if conditions.get("contended") is None:
            reasons.append(conditions.get("contention_reason") or "host CPU use unknown")
        elif conditions["contended"]:
            reasons.append(conditions["contention_reason"])
    return (not reasons), ("; ".join(reasons) or None)


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _rank(attempt: Attempt) -> tuple[float, float]:
    """Least contended first, then the smallest worst spread (None counts as worst)."""
    other = attempt.conditions.get("host_other_cpu_share")
    spreads = [s if s is not None else math.inf for s in attempt.spreads.values()] or [math.inf]
    return (other if other is not None else math.inf, max(spreads))


def measure_until_quiet(
    measure: Callable[[], list[dict[str, Any]]],
    *,
    num_threads: int,
    max_attempts: int,
    max_spread_rel: float,
    max_other_cpu_share: float = host.MAX_OTHER_CPU_SHARE,
    max_steal_share: float = host.MAX_STEAL_SHARE,
    wait_s: float = 0.0,
    check_host: bool = True,
    snapshot: Callable[[], host.HostSnapshot] = host.snapshot,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], str] = _utc_now,
    log: Callable[[str], None] = lambda _msg: None,
) -> QuietOutcome:
    """Run ``measure`` until an attempt is quiet, at most ``max_attempts`` times.

    Args:
        measure: Runs the measurement; returns its records.
        num_threads: Compute threads (for ``process_cpu_share``).
        max_attempts: Attempts in all (>= 1).
        max_spread_rel: Largest best-GEMM spread allowed, per dtype.
        max_other_cpu_share, max_steal_share: Host thresholds (:func:`common.host.conditions`).
        wait_s: Pause before each new attempt.
        check_host: Judge the host's CPU use too (CPU devices); off, only the spread counts.
        snapshot, sleep, now, log: Injected for tests and for the CLI's output.

    Returns:
        The first quiet attempt, or, when none was, the least contended one; and all attempts.
    """
    attempts: list[Attempt] = []
    for index in range(max_attempts):
        if index:
            sleep(wait_s)
        measured_at = now()
        start = snapshot()
        records = measure()
        end = snapshot()
        conditions = host.conditions(end - start, num_threads, max_other_cpu_share=max_other_cpu_share,
                                     max_steal_share=max_steal_share)
        conditions["host_load_avg_start"] = start.load_avg_1m
        conditions["host_load_avg_end"] = end.load_avg_1m
        spreads = gemm_spreads(records)
        quiet, reason = judge(spreads, conditions, max_spread_rel=max_spread_rel, check_host=check_host)
        attempts.append(Attempt(records, measured_at, conditions, spreads, quiet, reason))
        if quiet:
            break
        if index + 1 < max_attempts:
            log(f"attempt {index + 1}/{max_attempts} not quiet ({reason}); measuring again in {wait_s:g} s")
    chosen = next((a for a in attempts if a.quiet), None) or min(attempts, key=_rank)
    return QuietOutcome(chosen=chosen, attempts=attempts)
