"""Run folders that never collide and are never overwritten.

- Every process gets a short random id, ``${run_uid:}`` in ``hydra.run.dir`` and
  ``hydra.sweep.dir``, so two runs started in the same second get their own folders (they shared
  one, and one result was lost).
- Before Hydra touches anything, :func:`check_output_dir` refuses a run whose folder already
  holds a ``result.json`` (a finished run: ok, failed, diverged, oom or interrupted) and a folder
  that cannot be written, each with one line. In a sweep, a job whose folder already holds a
  ``result.json`` is skipped (:func:`finished_status`), so re-running a sweep into the same
  ``hydra.sweep.dir`` runs only what is missing.
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
    """``${run_uid:}`` for the run and sweep folder patterns in ``conf/harness/config.yaml``."""
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", lambda: RUN_UID)


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
    status = finished_status(run_dir)
    if status is not None:
        return (f"hydra.run.dir={run_dir} already holds a finished run (result.json, status {status}); "
                "it is never overwritten: choose another folder or remove that one")
    reason = unwritable_reason(run_dir)
    return f"cannot write the run folder hydra.run.dir={run_dir}: {reason}" if reason else None
