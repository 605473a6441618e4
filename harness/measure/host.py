"""Host conditions over the training windows: threads, affinity, load, and whether the CPU was shared.

The same default run trained at 157 GFLOP/s on a quiet box and at 12 GFLOP/s beside other
jobs; a time or energy figure means little without saying which. The criterion for
``contended`` is the CPU time other processes used during the training windows
(:func:`common.host.conditions`); load averages are recorded as information only, because they
lag a finished job by about a minute.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

import torch

from common import host

log = logging.getLogger(__name__)


class HostMeter:
    """Accumulates host counters over the ``train`` windows; ``finish`` gives the condition fields.

    Args:
        max_other_cpu_share: ``contended`` when other processes used more than this share of
            the host's CPU time during training.
        max_steal_share: ``contended`` when a hypervisor stole more than this share.
    """

    kinds = ("train",)

    def __init__(self, max_other_cpu_share: float = host.MAX_OTHER_CPU_SHARE,
                 max_steal_share: float = host.MAX_STEAL_SHARE) -> None:
        self.max_other_cpu_share = max_other_cpu_share
        self.max_steal_share = max_steal_share
        self.num_threads = torch.get_num_threads()
        self.info = host.host_info()
        self._total = host.HostDelta()
        self._start: Optional[host.HostSnapshot] = None
        self._first: Optional[host.HostSnapshot] = None
        self._last: Optional[host.HostSnapshot] = None

    def begin_window(self, kind: str) -> None:
        self._start = host.snapshot()
        if self._first is None:
            self._first = self._start

    def end_window(self) -> None:
        if self._start is None:
            raise RuntimeError("HostMeter.end_window: no window is open")
        self._last = host.snapshot()
        self._total = self._total + (self._last - self._start)
        self._start = None

    @property
    def process_cpu_s(self) -> float:
        """This process's CPU seconds in the training windows so far."""
        return self._total.process_cpu_s

    def add_sibling_cpu_s(self, cpu_s: float) -> None:
        """Count ``cpu_s`` of the run's other processes on this host (the other ranks of a torchrun
        run) as the run's own, not as other processes' load; call before :meth:`finish`."""
        self._total = dataclasses.replace(self._total, children_cpu_s=(self._total.children_cpu_s or 0.0) + cpu_s)

    def finish(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "num_threads": self.num_threads,
            "cpu_affinity": self.info.get("cpu_affinity"),
            "host_load_avg_start": self._first.load_avg_1m if self._first else None,
            "host_load_avg_end": self._last.load_avg_1m if self._last else None,
        }
        if self._total.num_windows == 0:
            fields.update(process_cpu_share=None, host_other_cpu_share=None, host_steal_share=None,
                          contended=None, contention_reason="no training window was measured")
            return fields
        fields.update(host.conditions(self._total, self.num_threads, max_other_cpu_share=self.max_other_cpu_share,
                                      max_steal_share=self.max_steal_share))
        if fields["contended"]:
            log.warning("contended: %s; time, energy and burden figures of this run are not those of a quiet "
                        "machine", fields["contention_reason"])
        return fields

    def close(self) -> None:
        self._start = None
