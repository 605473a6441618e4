"""Run folders that never collide and are never overwritten.

- Every process gets a short random id, ``${run_uid:}`` in ``hydra.run.dir`` and
  ``hydra.sweep.dir``, so two runs started in the same second get their own folders (they shared
  one, and one result was lost).
- Before Hydra touches anything, :func:`check_output_dir` refuses a run whose folder already
  holds a ``result.json`` (a finished run: ok, failed, diverged, oom or interrupted) and a folder
  that cannot be written, each with one line. A single run never overwrites a finished run,
  ``force=true`` or not.
- Re-running a sweep (same overrides, same ``hydra.sweep.dir``): :func:`job_plan` skips a job
  whose ``result.json`` says ``ok`` and re-runs every other one (failed, diverged, oom,
  interrupted, unreadable, missing); ``force=true`` re-runs the ``ok`` ones too. A re-run job
  first moves the previous attempt aside (:func:`move_aside`): every file of the job folder
  except Hydra's ``.hydra/`` and the appended ``harness.log`` goes to ``previous/<n>/``
  (``n`` = 1, 2, ...), so the folder then holds the new attempt and nothing finished is ever
  overwritten or lost. ``sweep.csv`` (:mod:`harness.sweep`) marks the skipped jobs.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from common.atomic import unwritable_reason

#: One id per process: the folder's suffix (6 hex digits, 16.7 M values).
RUN_UID = secrets.token_hex(3)
MULTIRUN_FLAGS = ("-m", "--multirun")


def register_resolvers() -> None:
    """``${run_uid:}`` for the run and sweep folder patterns in ``conf/harness/config.yaml``.

    Cached in the config like Hydra's ``${now:}``: a SLURM job (another process, another
    ``RUN_UID``) gets the launcher's config with its cache, so it resolves the same sweep folder.
    """
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", lambda: RUN_UID, use_cache=True)


def finished_status(run_dir: Path) -> Optional[str]:
    """The status of the finished run in ``run_dir``, or None when there is no ``result.json``.

    An unreadable ``result.json`` still counts as finished (``"unreadable"``): it is never
    overwritten.
    """
    path = Path(run_dir) / "result.json"
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text()).get("status"))
    except (OSError, ValueError, AttributeError):
        return "unreadable"


#: Files of a job folder that stay when an attempt is moved aside: Hydra's own, rewritten or appended.
KEPT_ON_RERUN = (".hydra", "harness.log", "previous")


def job_plan(run_dir: Path, force: bool) -> tuple[str, Optional[str]]:
    """What a sweep job does with its folder: ``("run", None)`` (nothing finished there),
    ``("skip", "ok")`` (already ok, not forced) or ``("rerun", status)`` (a finished attempt of
    any other status, or an ok one under ``force``; move it aside first)."""
    from harness.checkpoint import resumable

    status = finished_status(run_dir)
    if resumable(run_dir):
        return "resume", status  # interrupted with a checkpoint: continue it (harness/checkpoint.py)
    if status is None:
        return "run", None
    if status == "ok" and not force:
        return "skip", status
    return "rerun", status


def move_aside(run_dir: Path) -> Path:
    """Move the previous attempt's files (all but :data:`KEPT_ON_RERUN`) into ``previous/<n>/``."""
    run_dir = Path(run_dir)
    previous = run_dir / "previous"
    taken = [int(p.name) for p in previous.iterdir() if p.name.isdigit()] if previous.is_dir() else []
    target = previous / str(max(taken, default=0) + 1)
    target.mkdir(parents=True)
    # result.json last: until it moves, the folder still counts as finished (an interrupted move
    # is finished by the next re-run, into the next previous/<n>/; nothing is lost)
    entries = sorted(run_dir.iterdir(), key=lambda p: (p.name == "result.json", p.name))
    for entry in entries:
        if entry.name not in KEPT_ON_RERUN:
            entry.rename(target / entry.name)
    return target


def planned_dirs(config_dir: str, config_name: str, overrides: list[str]) -> tuple[Path, Path]:
    """The run folder and the sweep folder Hydra will use for these overrides."""
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        return Path(str(cfg.hydra.run.dir)), Path(str(cfg.hydra.sweep.dir))


def check_output_dir(args: list[str], config_dir: str, config_name: str) -> Optional[str]:
    """One line when the output folder of ``python -m harness ARGS`` must not be used, else None.

    Only the overrides that name Hydra's folders matter here; anything else was checked (or
    will be reported) by the override pre-check.
    """
    if any(a.startswith("-") and a not in MULTIRUN_FLAGS for a in args):
        return None  # --help, --cfg, ...: Hydra handles those and writes nothing
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    folder_keys = ("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=")
    overrides = [a for a in args if a.startswith(folder_keys)]
    try:
        run_dir, sweep_dir = planned_dirs(config_dir, config_name, overrides)
    except Exception:  # noqa: BLE001  (a bad folder override is reported by the override pre-check)
        return None
    if multirun:
        reason = unwritable_reason(sweep_dir)
        return f"cannot write the sweep folder hydra.sweep.dir={sweep_dir}: {reason}" if reason else None
    from harness.checkpoint import resumable

    status = finished_status(run_dir)
    if status is not None and not resumable(run_dir):
        return (f"hydra.run.dir={run_dir} already holds a finished run (result.json, status {status}); "
                "it is never overwritten: choose another folder or remove that one")
    reason = unwritable_reason(run_dir)
    return f"cannot write the run folder hydra.run.dir={run_dir}: {reason}" if reason else None
