"""The window interface every meter implements, and the one place windows are opened and closed.

A meter measures over windows: ``begin_window(kind)``, ``end_window()``, and at the end
``finish()``, which returns its ``result.json`` fields (each with its method), then ``close()``.
Window kinds:

- ``train``: the training steps. Time, FLOPs, energy, hardware burden, achieved FLOP/s and
  host conditions all cover exactly these windows (DESIGN.md, "one window").
- ``warmup``: the timing warm-up, run before training on a snapshot that is then restored, so
  it is measured on its own and never mixed into the training figures.
- ``eval``: evaluations (timed; not metered for energy).

:class:`Meters` opens a window on every meter at one device synchronisation, so all figures of
a window share its edges: sync, then the energy and host reads, then the clock; at the end
sync, then the clock, then the energy and host reads.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator, Optional, Protocol

import torch

from harness.measure.timer import synchronize

log = logging.getLogger(__name__)

WINDOW_KINDS = ("train", "warmup", "eval")


class Meter(Protocol):
    """What :class:`Meters` needs from a meter."""

    #: The window kinds this meter measures; others are skipped.
    kinds: tuple[str, ...]

    def begin_window(self, kind: str) -> None: ...

    def end_window(self) -> None: ...

    def finish(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class TimeMeter:
    """Seconds per window kind, from ``time.perf_counter`` (the caller synchronises the device)."""

    kinds = WINDOW_KINDS

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(WINDOW_KINDS, 0.0)
        self.num_windows: dict[str, int] = dict.fromkeys(WINDOW_KINDS, 0)
        self._open: Optional[tuple[str, float]] = None

    def begin_window(self, kind: str) -> None:
        if self._open is not None:
            raise RuntimeError("TimeMeter.begin_window: a window is already open")
        self._open = (kind, time.perf_counter())

    def end_window(self) -> None:
        if self._open is None:
            raise RuntimeError("TimeMeter.end_window: no window is open")
        kind, start = self._open
        self.seconds[kind] += time.perf_counter() - start
        self.num_windows[kind] += 1
        self._open = None

    def finish(self) -> dict[str, Any]:
        return {
            "train_time_s": self.seconds["train"],
            "warmup_time_s": self.seconds["warmup"] if self.num_windows["warmup"] else None,
            "eval_time_s": self.seconds["eval"],
        }

    def close(self) -> None:
        self._open = None


class Meters:
    """Time plus any other meters, windowed together at one device synchronisation.

    Args:
        device: The device whose queued work each window edge waits for.
        energy: The energy meter (:class:`harness.measure.energy.EnergyMeter`), or None.
        host: The host-conditions meter (:class:`harness.measure.host.HostMeter`), or None.
    """

    def __init__(self, device: torch.device, *, energy: Optional[Any] = None, host: Optional[Meter] = None) -> None:
        self.device = device
        self.time = TimeMeter()
        self.energy = energy
        self.host = host
        self.others: list[Meter] = [m for m in (energy, host) if m is not None]
        self._kind: Optional[str] = None

    def energy_total_j(self) -> Optional[float]:
        """Energy of the closed ``train`` windows so far (all components), or None."""
        return None if self.energy is None else self.energy.so_far().get("energy_total_j")

    def begin(self, kind: str) -> None:
        if kind not in WINDOW_KINDS:
            raise ValueError(f"window kind {kind!r}; valid: {', '.join(WINDOW_KINDS)}")
        if self._kind is not None:
            raise RuntimeError(f"Meters.begin({kind!r}): a {self._kind!r} window is open")
        synchronize(self.device)
        for meter in self.others:
            if kind in meter.kinds:
                meter.begin_window(kind)
        self._kind = kind
        self.time.begin_window(kind)  # last: the clock starts after the other reads

    def end(self) -> None:
        if self._kind is None:
            raise RuntimeError("Meters.end: no window is open")
        synchronize(self.device)
        self.time.end_window()  # first: the clock stops before the other reads
        kind, self._kind = self._kind, None
        for meter in self.others:
            if kind in meter.kinds:
                meter.end_window()

    @contextlib.contextmanager
    def window(self, kind: str) -> Iterator[None]:
        """``with meters.window("eval"): ...``; the window closes on an exception too."""
        self.begin(kind)
        try:
            yield
        finally:
            if self._kind is not None:
                self.end()

    def seconds(self, kind: str) -> float:
        """Seconds in closed windows of ``kind`` so far."""
        return self.time.seconds[kind]

    def finish(self) -> dict[str, Any]:
        """Close an open window, then every meter's fields. A meter that fails gives none of its
        fields (they stay null) rather than masking the run's own outcome."""
        if self._kind is not None:
            self.end()
        fields = self.time.finish()
        for meter in self.others:
            try:
                fields.update(meter.finish())
            except Exception:  # noqa: BLE001
                log.exception("%s failed to finish; its fields are null", type(meter).__name__)
        return fields

    def close(self) -> None:
        """Release every meter (threads, NVML, codecarbon). Safe on error paths; idempotent."""
        for meter in [self.time, *self.others]:
            try:
                meter.close()
            except Exception:  # noqa: BLE001
                pass
