"""``python -m harness [overrides]``: one measured run (``-m`` for a sweep).

Examples:
    python -m harness                                  # resnet scale=0.25 on Fashion-MNIST
    python -m harness model.depth=50 scale=0.5 trainer.epochs=2
    python -m harness -m scale=0.125,0.25,0.5           # a sweep, one folder per job
    python -m harness -m hydra/launcher=slurm_gpu scale=0.25,0.5,1.0   # one SLURM job per point
    torchrun --nproc_per_node=2 -m harness scale=0.5   # one run on 2 devices (DDP; harness/distributed.py)
"""
from __future__ import annotations

import time

COMMAND_STARTED_AT = time.time()  # before the imports below: the first run's startup_time_s counts from here

import atexit
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from common.hydra_cli import CONF_DIR, exit_on_bad_overrides
from harness import distributed
from harness.config import register_configs
from harness.device import resolve_device
from harness.errors import UserError
from harness.results import empty_result, write_result
from harness.runner import run, set_command_start
from harness.checkpoint import resumable
from harness.rundir import check_output_dir, finished_status, job_plan, move_aside, register_resolvers
from harness.stop import exit_code
from harness.summary import format_summary

log = logging.getLogger("harness")
register_configs()
register_resolvers()
set_command_start(COMMAND_STARTED_AT)


def _remove_if_only_hydra(run_dir: Path) -> None:
    """Bad input writes nothing: drop the folder Hydra made if it holds only its own files."""
    if run_dir.is_dir() and all(p.name in (".hydra", "harness.log") for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    distributed.adopt_slurm_tasks()  # a SLURM job of several tasks is one DDP run
    rank = distributed.from_env()
    if not rank.is_main:  # ranks > 0: rank 0 logs, writes and prints
        logging.getLogger().setLevel(logging.WARNING)
    if not multirun and rank.is_main:
        done = finished_status(run_dir)
        if done is not None and not resumable(run_dir):  # never overwrite a finished run (force=true is for sweeps)
            log.warning("skipped: %s already holds a finished run (status %s)", run_dir, done)
            print(f"error: {run_dir} already holds a finished run (status {done}); it is never overwritten", file=sys.stderr)
            sys.exit(2)
    elif multirun:  # a re-run sweep skips the ok jobs and re-runs the others (harness/rundir.py)
        plan, done = job_plan(run_dir, cfg.force) if rank.is_main else (None, None)
        if rank.enabled:  # the tasks of one SLURM job share its folder: rank 0 decides for all
            distributed.init(rank, resolve_device(distributed.device_for(rank, cfg.device)))
            plan, done = rank.broadcast_object((plan, done))
        if plan == "skip":
            log.warning("skipped: %s already holds a finished run (status %s); force=true re-runs it", run_dir, done)
            distributed.shutdown()
            return
        if plan == "resume":
            log.warning("resuming: %s holds an interrupted run with a checkpoint", run_dir)
        if plan == "rerun" and rank.is_main:
            moved = move_aside(run_dir)
            log.warning("re-running: %s held a finished run (status %s%s), moved to %s",
                        run_dir, done, ", force=true" if done == "ok" else "", moved)
    try:
        result = run(cfg, run_dir, overrides)
    except UserError as exc:
        if multirun:  # a sweep records the failed job and goes on
            log.error("job failed: %s", exc)
            if not rank.is_main:
                return
            failed = empty_result()
            failed.update(overrides=overrides, status="failed", failure_reason=f"bad input: {exc}")
            write_result(run_dir / "result.json", failed)
            return
        print(f"error: {exc}", file=sys.stderr)
        _remove_if_only_hydra(run_dir)
        sys.exit(2)
    if not rank.is_main:
        return
    print(format_summary(result, str(run_dir)))
    code = exit_code(result)
    if code and (not multirun or result["status"] == "interrupted"):  # a stopped sweep stops
        sys.exit(code)


def _torchrun_args(argv: list[str]) -> list[str]:
    """A torchrun rank's arguments: one run (no -m), and for ranks > 0 a throw-away Hydra folder
    (they learn rank 0's run folder from it: harness/distributed.py)."""
    try:
        rank = distributed.from_env()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not rank.enabled:
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        print("error: torchrun runs one job on several devices; sweep with -m without torchrun (a SLURM "
              "launcher preset with several GPUs per task runs each job under torchrun)", file=sys.stderr)
        sys.exit(2)
    if rank.is_main:
        return argv
    scratch = tempfile.mkdtemp(prefix=f"computelimits-rank{rank.rank}-")
    atexit.register(shutil.rmtree, scratch, True)
    kept = [a for a in argv if not a.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return kept + [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


if __name__ == "__main__":
    sys.argv[1:] = _torchrun_args(sys.argv[1:])
    exit_on_bad_overrides("config")
    problem = check_output_dir(sys.argv[1:], str(CONF_DIR), "config")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside a run's training loop (start-up, a second Ctrl-C)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
