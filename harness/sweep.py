"""``sweep.csv``: the whole sweep at a glance, one row per job, written when a sweep ends.

:class:`SweepCsv` is a Hydra callback (``hydra.callbacks.sweep_csv`` in ``conf/harness/config.yaml``);
only its multirun hooks do anything, so single runs are untouched. It runs in the process that
launched the sweep, with any launcher (basic, ``submitit_local``, ``submitit_slurm``), and reads
each job's ``result.json`` from the sweep folder, never the jobs' Python return values, which a
SLURM job does not hand back when it dies.

Rows are the sweep's jobs in job order (Hydra's basic sweeper expansion of the overrides), each
matched to the job folder whose ``.hydra/overrides.yaml`` holds its overrides, so job folders
of an earlier, different sweep into the same folder are not listed; with another sweeper,
every job folder (``.hydra/`` or ``result.json`` inside) is a row. ``status`` is the result's, or ``missing`` when the job left no ``result.json``
(killed, still queued, or crashed before writing) and ``unreadable`` when it cannot be parsed.
``skipped`` is true for a job whose ``result.json`` is the one that was there when the sweep
started (a re-run sweep skips the jobs that are already ``ok``; see :mod:`harness.rundir`).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from common.atomic import write_atomic

log = logging.getLogger("harness.sweep")

SWEEP_CSV = "sweep.csv"
#: Columns of sweep.csv; units are in the names (result.json's fields of the same name).
SWEEP_FIELDS = (
    "job", "overrides", "status", "skipped", "metric_name", "metric_value", "error", "failure_reason",
    "train_flops", "train_time_s", "energy_total_j", "wall_time_s", "run_dir",
)


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def result_identity(run_dir: Path) -> Optional[str]:
    """What tells this ``result.json`` from a newer one: its ``run_id`` (mtime and size if unreadable)."""
    path = Path(run_dir) / "result.json"
    if not path.exists():
        return None
    data = _read_json(path)
    if data and data.get("run_id"):
        return str(data["run_id"])
    stat = path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep folder (``.hydra/`` or ``result.json`` inside), by job number."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    found = [p for p in sweep_dir.iterdir()
             if p.is_dir() and not p.name.startswith(".") and ((p / ".hydra").is_dir() or (p / "result.json").exists())]
    return sorted(found, key=lambda p: (_job_num(p) is None, _job_num(p) or 0, p.name))


def _job_num(job_dir: Path) -> Optional[int]:
    """``hydra.job.num`` from the job's ``.hydra/hydra.yaml``, else the folder name's leading number."""
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        try:
            from omegaconf import OmegaConf

            num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num")
            if num is not None:
                return int(num)
        except Exception:  # noqa: BLE001  (a damaged file: fall back to the folder name)
            pass
    head = job_dir.name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def _job_overrides(job_dir: Path, result: Optional[dict[str, Any]]) -> list[str]:
    if result and isinstance(result.get("overrides"), list):
        return [str(o) for o in result["overrides"]]
    path = job_dir / ".hydra" / "overrides.yaml"
    if path.is_file():
        try:
            from omegaconf import OmegaConf

            return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path))]
        except Exception:  # noqa: BLE001
            pass
    return []


def planned_jobs(config: DictConfig) -> Optional[list[list[str]]]:
    """Each job's overrides, in job order, as Hydra's basic sweeper expands them (what every job's
    ``.hydra/overrides.yaml`` holds); None for another sweeper or what cannot be parsed."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        target = str(OmegaConf.select(config, "hydra.sweeper._target_") or "")
        if not target.endswith("BasicSweeper"):
            return None
        params = OmegaConf.select(config, "hydra.sweeper.params") or {}
        args = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in config.hydra.overrides.task]
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
        return [list(job) for batch in batches for job in batch]
    except Exception:  # noqa: BLE001  (then every job folder of the sweep folder is listed)
        return None


def _folder_overrides(job_dir: Path) -> Optional[tuple[str, ...]]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        return tuple(str(o) for o in OmegaConf.to_container(OmegaConf.load(path)))
    except Exception:  # noqa: BLE001
        return None


def sweep_rows(sweep_dir: Path, before: Optional[dict[str, str]] = None,
               planned: Optional[list[list[str]]] = None) -> list[dict[str, Any]]:
    """One row per job, from its ``result.json``.

    ``planned``: the sweep's jobs (:func:`planned_jobs`); each is matched to the folder whose
    ``.hydra/overrides.yaml`` holds its overrides, and a job without a folder is a ``missing``
    row. Without it, every job folder of ``sweep_dir`` is a row. ``before`` maps folder name to
    the :func:`result_identity` seen when the sweep started (a job that kept it was skipped).
    """
    before = before or {}
    folders = job_dirs(sweep_dir)
    if planned is None:
        jobs: list[tuple[Optional[int], Optional[list[str]], Optional[Path]]] = [(_job_num(d), None, d) for d in folders]
    else:
        by_overrides = {_folder_overrides(d): d for d in folders}
        jobs = [(i, job, by_overrides.get(tuple(job))) for i, job in enumerate(planned)]
    rows = []
    for num, overrides, job_dir in jobs:
        row: dict[str, Any] = {k: None for k in SWEEP_FIELDS}
        path = job_dir / "result.json" if job_dir is not None else None
        result = _read_json(path) if path is not None and path.exists() else None
        if path is None or not path.exists():
            status = "missing"
        elif result is None:
            status = "unreadable"
        else:
            status = str(result.get("status"))
        identity = result_identity(job_dir) if job_dir is not None else None
        if overrides is None:
            overrides = _job_overrides(job_dir, result) if job_dir is not None else []
        row.update(job=num, overrides=" ".join(overrides), status=status,
                   skipped=identity is not None and before.get(job_dir.name) == identity,
                   run_dir=None if job_dir is None else str(job_dir))
        if result is not None:
            for key in ("metric_name", "metric_value", "error", "failure_reason", "train_flops", "train_time_s",
                        "energy_total_j", "wall_time_s"):
                row[key] = result.get(key)
        rows.append(row)
    return rows


def write_sweep_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``sweep.csv`` atomically; empty cells mean null (as in ``curve.csv``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SWEEP_FIELDS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in SWEEP_FIELDS})
    write_atomic(path, buf.getvalue())


def summary_line(rows: list[dict[str, Any]]) -> str:
    """``sweep: 3 jobs, 1 skipped (already ok), 1 ok, 1 failed``: what the sweep did."""
    ran = [r for r in rows if not r["skipped"]]
    counts: dict[str, int] = {}
    for r in ran:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    parts = [f"{len(rows)} jobs", f"{len(rows) - len(ran)} skipped (already ok)"]
    parts += [f"{n} {status}" for status, n in sorted(counts.items())]
    return "sweep: " + ", ".join(parts)


class SweepCsv(Callback):
    """Writes ``<hydra.sweep.dir>/sweep.csv`` when a multirun ends; says how many jobs were skipped.

    The table is also rewritten after every job (``on_job_end``, in the job's process: the
    launcher hands this callback, with what it saw at the start, to every job, SLURM ones
    included), so a sweep that stops early (Ctrl-C, a job killed, the launcher gone) still
    leaves a ``sweep.csv`` up to its last finished job.
    """

    def __init__(self, filename: str = SWEEP_CSV) -> None:
        self.filename = filename
        self._sweep_dir: Optional[Path] = None
        self._before: dict[str, str] = {}
        self._planned: Optional[list[list[str]]] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._planned = planned_jobs(config)
        self._before = {}
        for job_dir in job_dirs(self._sweep_dir):
            identity = result_identity(job_dir)
            if identity is not None:
                self._before[job_dir.name] = identity

    def _write(self, sweep_dir: Path) -> list[dict[str, Any]]:
        rows = sweep_rows(sweep_dir, self._before, self._planned)
        write_sweep_csv(sweep_dir / self.filename, rows)
        return rows

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self._sweep_dir is None:  # a single run: no sweep table
            return
        from harness.distributed import from_env

        if not from_env().is_main:  # a task > 0 of a several-task job: rank 0 writes the job's result
            return
        try:
            self._write(self._sweep_dir)
        except Exception as exc:  # noqa: BLE001  (the table is a convenience; the job's result stands)
            log.warning("sweep.csv not updated after this job: %s", exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if self._sweep_dir is None:
            self.on_multirun_start(config)  # not seen starting (should not happen): no skipped marks
            self._before = {}
        rows = self._write(sweep_dir)
        # stderr, not the logging tree: after a basic-launcher sweep the root logger still writes
        # into the last job's harness.log, which must hold that job only
        print(f"{summary_line(rows)}; {sweep_dir / self.filename}", file=sys.stderr)
