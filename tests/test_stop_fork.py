"""Processes forked inside a run's StopRequest (pool workers) still die on SIGTERM.

Before the fix, a ``multiprocessing`` fork pool made inside the run (the detection workload's
scene generation on a first run) inherited the run's handler: ``Pool.terminate()`` sent its
workers SIGTERM, they only set a flag, and the run hung for ever.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

from harness.stop import StopRequest


def _sleep_long() -> None:
    time.sleep(60)


def test_a_child_forked_inside_the_context_dies_on_sigterm_and_the_parent_only_flags():
    ctx = multiprocessing.get_context("fork")
    with StopRequest() as stop:
        child = ctx.Process(target=_sleep_long)
        child.start()
        time.sleep(0.2)
        os.kill(child.pid, signal.SIGTERM)
        child.join(timeout=10)
        assert child.exitcode == -signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # the run's own process keeps the flag behaviour
        assert stop.requested and stop.name == "SIGTERM"


def test_a_fork_pool_inside_the_context_ends(tmp_path):
    # in a subprocess with a timeout, so that the old behaviour fails the test instead of hanging it
    code = textwrap.dedent("""
        import multiprocessing, time
        from harness.stop import StopRequest
        with StopRequest() as stop:
            with multiprocessing.get_context("fork").Pool(2) as pool:
                total = sum(pool.map(abs, range(-100, 100), chunksize=8))
                pool.map_async(time.sleep, [2, 2], chunksize=1)
                time.sleep(0.5)  # both workers busy when the pool's exit terminates them
        print(total, stop.requested)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10000", "False"]
