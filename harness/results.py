"""The result schema (DESIGN.md) and atomic writers for ``result.json`` and ``curve.csv``.

One flat JSON object, units in the names, null where unknown (never 0). Every key in
:data:`RESULT_FIELDS` is present in every result, so readers never guess.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable

from common.atomic import write_atomic, write_json_atomic

RESULT_FIELDS: tuple[str, ...] = (
    # identity
    "run_id", "run_name", "started_at", "git_commit", "overrides", "config", "seed",
    # what ran
    "workload", "benchmark", "model", "scale", "dataset", "dataset_source", "dataset_details", "num_params",
    "precision", "device_type", "device_name", "num_devices", "distributed_method",
    "torch_version", "cuda_version", "driver_version",
    # work done (train_* cover every training step; warm-up is separate and restored, see warmup_method)
    "train_samples", "train_steps", "epochs", "batch_size", "eval_samples", "eval_is_subset", "num_evals",
    "warmup_steps", "warmup_samples", "warmup_method", "curve_window",
    # FLOPs
    "fwd_macs_per_sample", "fwd_flops_per_sample", "flops_unsupported_ops", "fwd_flops_method",
    "train_flops", "train_flops_method", "warmup_flops", "padding_fraction", "flops_distinct_shapes",
    "flops_count_time_s",
    "train_step_flops_measured_per_sample", "train_step_flops_ratio", "train_step_flops_method",
    "fwd_flops_counter_agreement",
    "eval_flops", "eval_flops_method",
    # time
    "train_time_s", "eval_time_s", "data_time_s", "warmup_time_s", "wall_time_s",
    "time_method", "startup_time_s", "startup_method", "startup_phases_s", "eval_samples_per_s",
    # hardware
    "peak_flops_per_s", "peak_dtype", "peak_source",
    "peak_flops_per_s_run_dtype", "peak_run_dtype", "peak_run_dtype_source",
    "measured_peak_flops_per_s", "measured_peak_source", "measured_peak_note",
    "hardware_burden_flops", "hardware_burden_method",
    "achieved_flops_per_s", "achieved_flops_method", "mfu_theoretical", "mfu_measured",
    # energy (energy_* and co2_kg cover the training windows; warm-up on its own)
    "energy_gpu_j", "energy_cpu_j", "energy_ram_j", "energy_total_j",
    "energy_gpu_method", "energy_cpu_method", "energy_ram_method", "energy_gpu_j_per_device",
    "energy_window", "energy_assumptions", "warmup_energy_j", "idle_power_w", "energy_above_idle_j",
    "co2_kg", "carbon_intensity_g_per_kwh", "country_iso_code", "co2_method",
    # conditions (over the training windows)
    "num_threads", "cpu_affinity", "host_load_avg_start", "host_load_avg_end",
    "process_cpu_share", "host_other_cpu_share", "host_steal_share", "contended", "contention_reason",
    # quality: the primary metric and its error; every metric of the last evaluation; the files
    # holding its predictions in the benchmark's standard format (in the run folder)
    "metric_name", "metric_value", "error", "metrics", "metric_details", "prediction_files",
    # outcome; a run stopped with a checkpoint and resumed by the same command has num_segments > 1
    # (time and energy summed over them; harness/checkpoint.py)
    "status", "failure_reason", "stop_signal", "num_segments", "checkpoint",
)

CURVE_FIELDS: tuple[str, ...] = (
    "eval_index", "train_samples", "train_steps", "epochs", "train_flops", "train_time_s",
    "hardware_burden_flops", "energy_total_j", "wall_time_s", "metric_name", "metric_value", "error",
    "window",
)

STATUSES = ("ok", "diverged", "oom", "failed", "interrupted")


def empty_result() -> dict[str, Any]:
    """Every schema field, all null."""
    return dict.fromkeys(RESULT_FIELDS)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and inf become null (JSON has neither), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result.json``; unknown keys are an error (the schema is the contract)."""
    extra = sorted(set(result) - set(RESULT_FIELDS))
    if extra:
        raise KeyError(f"result has keys outside the schema: {extra}")
    if result.get("status") not in STATUSES:
        raise ValueError(f"status={result.get('status')!r} is not one of {STATUSES}")
    ordered = {k: _clean(result.get(k)) for k in RESULT_FIELDS}
    write_json_atomic(path, ordered)


def write_files(folder: Path, files: dict[str, str]) -> list[str]:
    """Write an evaluation's files (plain names, no folders) into ``folder`` atomically; their names."""
    for name in files:
        if Path(name).name != name or name in ("", ".", "..") or name in ("result.json", "curve.csv"):
            raise ValueError(f"evaluation file name {name!r} must be a plain file name other than the run's own files")
    for name, text in files.items():
        write_atomic(folder / name, text)
    return sorted(files)


def write_curve(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """(Re)write ``curve.csv`` atomically with all rows so far; empty cells mean null."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if _clean(row.get(k)) is None else row.get(k)) for k in CURVE_FIELDS})
    write_atomic(path, buf.getvalue())
