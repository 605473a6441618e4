"""Stop a run cleanly on SIGTERM or SIGINT: finish the current step, then write the result.

SLURM sends SIGTERM at a time limit or on preemption, and then SIGKILL after ``KillWait``
(30 s by default, slurm.conf(5)); Ctrl-C sends SIGINT. The first signal only sets a flag that
the training loop checks after every step, so the run records ``status: interrupted`` with its
partial measures and exits with 128 + the signal number, the shell's convention. A second
signal stops at once (KeyboardInterrupt), and the runner still writes what it has.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Optional

log = logging.getLogger(__name__)

#: SIGUSR1: what a SLURM job asks for with --signal=USR1@<s> before its time limit (submitit keeps USR2 for itself).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequest:
    """A context manager that turns the first SIGTERM/SIGINT into a flag.

    Outside the main thread (where Python cannot install handlers) it installs nothing and
    ``signum`` stays None. A process forked inside the context (a ``multiprocessing`` pool's
    worker, a DataLoader worker) inherits the handlers; there a signal does what it would have
    done without them, so ``Pool.terminate()`` still ends its workers.
    """

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> Optional[str]:
        return None if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != self._pid:  # a forked child: the signal's default action (SIGINT: KeyboardInterrupt)
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
                return
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
            os.kill(os.getpid(), signum)
            return
        if self.signum is not None:  # the second one: stop now
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self.signum = signum
        log.warning("received %s: finishing the current step, then writing result.json (send it again to stop at once)",
                    signal.Signals(signum).name)

    def __enter__(self) -> "StopRequest":
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def exit_code(result: dict[str, Any]) -> int:
    """The process exit status for a finished run: 0 ok, 128 + signal when stopped by one, else 1."""
    if result.get("status") == "ok":
        return 0
    if result.get("status") == "interrupted" and result.get("stop_signal"):
        return 128 + int(result["stop_signal"])
    return 1
