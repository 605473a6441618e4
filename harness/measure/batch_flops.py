"""FLOPs of the batches as they ran: counted once per distinct shape, summed over every batch.

Variable-length data (text padded per batch) makes "FLOPs per sample x samples" wrong: a batch
costs what its padded shape costs. :class:`BatchFlops` tallies every batch of a window (``train``,
``warmup``) by its workload-given shape key and its real/padded positions, and counts the forward
FLOPs of one batch per key with fvcore (:func:`harness.measure.flops.count_forward_macs`). Counting
is deferred to :meth:`BatchFlops.settle`, which the loop calls between its timed windows, so no
count runs inside a training window.

Training compute is the paper's 3 x forward (Thompson et al. 2020, after Amodei & Hernandez 2018),
applied batch by batch: ``train_flops = 3 x sum over trained batches of forward FLOPs(batch)``.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any, Callable, Hashable, Optional

from harness.measure.flops import TRAIN_FLOPS_PER_FORWARD_FLOP, ForwardCount


class BatchFlops:
    """Per-window tallies of batches, positions and (once settled) forward FLOPs.

    Args:
        count: ``count(batch) -> ForwardCount`` for the whole batch (``num_samples=1``), or None
            when FLOPs are not counted (positions and samples are still tallied).
        shape_key: ``shape_key(batch)``: equal keys cost equal FLOPs.
        positions: ``positions(batch) -> (real, padded)`` as Python ints.
    """

    def __init__(self, count: Optional[Callable[[Any], ForwardCount]], shape_key: Callable[[Any], Hashable],
                 positions: Callable[[Any], tuple[int, int]]) -> None:
        self._count, self._key, self._positions = count, shape_key, positions
        self._macs: dict[Hashable, float] = {}  # forward multiply-adds of one batch of each shape
        self._pending: dict[Hashable, Any] = {}  # one batch of each shape not yet counted
        self.batches: dict[str, Counter] = defaultdict(Counter)  # window -> shape key -> batches
        self.real_positions: Counter = Counter()  # window -> real positions
        self.padded_positions: Counter = Counter()  # window -> positions as run (real + padding)
        self.unsupported_ops: Counter = Counter()  # op -> calls, over every counted shape
        self.count_time_s = 0.0  # spent counting (outside every timed window)
        self.failure: Optional[str] = None  # why counting failed (then every FLOP total is None)

    def add(self, window: str, batch: Any) -> None:
        """Tally one batch of ``window``. Cheap: no counting, no device synchronisation."""
        key = self._key(batch)
        self.batches[window][key] += 1
        real, padded = self._positions(batch)
        self.real_positions[window] += real
        self.padded_positions[window] += padded
        if self._count is not None and key not in self._macs and key not in self._pending:
            self._pending[key] = batch

    def settle(self) -> None:
        """Count the shapes seen since the last call (call it outside the timed windows)."""
        if not self._pending or self.failure is not None:
            return
        start = time.perf_counter()
        try:
            for key, batch in list(self._pending.items()):
                fwd = self._count(batch)
                self._macs[key] = fwd.macs_per_sample  # num_samples=1: the whole batch
                self.unsupported_ops.update(fwd.unsupported_ops)
                del self._pending[key]
        except Exception as exc:  # noqa: BLE001  (e.g. out of memory after a failed run: no total, not a crash)
            self.failure = (f"{type(exc).__name__}: {exc}".splitlines() or ["?"])[0]
            self._pending.clear()
        finally:
            self.count_time_s += time.perf_counter() - start

    def forward_flops(self, window: str) -> Optional[float]:
        """Forward FLOPs (2 per multiply-add) of every batch of ``window``; None when not counted."""
        if self._count is None:
            return None
        self.settle()
        if self.failure is not None:
            return None
        return sum(2.0 * self._macs[key] * n for key, n in self.batches[window].items())

    def train_flops(self, window: str) -> Optional[float]:
        """The paper's training compute of ``window``: 3 x its forward FLOPs."""
        fwd = self.forward_flops(window)
        return None if fwd is None else TRAIN_FLOPS_PER_FORWARD_FLOP * fwd

    def padding_fraction(self, window: str) -> Optional[float]:
        """Share of the positions computed on that were padding; None before any batch."""
        padded = self.padded_positions[window]
        return None if padded == 0 else 1.0 - self.real_positions[window] / padded

    def state_dict(self) -> dict[str, Any]:
        """The tallies and counts so far (settled first), for a checkpoint."""
        self.settle()
        return {"macs": dict(self._macs), "batches": {w: dict(c) for w, c in self.batches.items()},
                "real_positions": dict(self.real_positions), "padded_positions": dict(self.padded_positions),
                "unsupported_ops": dict(self.unsupported_ops), "count_time_s": self.count_time_s,
                "failure": self.failure}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._macs = dict(state["macs"])
        self._pending = {}
        self.batches = defaultdict(Counter, {w: Counter(c) for w, c in state["batches"].items()})
        self.real_positions = Counter(state["real_positions"])
        self.padded_positions = Counter(state["padded_positions"])
        self.unsupported_ops = Counter(state["unsupported_ops"])
        self.count_time_s = float(state["count_time_s"])
        self.failure = state["failure"]

    def distinct_shapes(self, window: str) -> int:
        return len(self.batches[window])


class ShapeCounts:
    """Forward multiply-adds of one batch per shape key, counted once with fvcore: the evaluation
    batches a workload runs itself (training batches go through :class:`BatchFlops`)."""

    def __init__(self) -> None:
        self.macs: dict[Hashable, float] = {}
        self.unsupported_ops: Counter = Counter()

    def macs_of(self, model: Any, key: Hashable, inputs: tuple) -> float:
        """Multiply-adds of ``model(*inputs)`` (fvcore, eval mode); counted on the first call per ``key``."""
        if key not in self.macs:
            from harness.measure.flops import count_forward_macs

            counted = count_forward_macs(model, inputs, num_samples=1)
            self.macs[key] = counted.macs_per_sample
            self.unsupported_ops.update(counted.unsupported_ops)
        return self.macs[key]
