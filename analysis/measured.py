"""Load this project's measured runs: every ``result.json`` under ``results.root``.

Each run becomes one point under the paper's compute measures: ``forward_pass`` is
``fwd_flops_per_sample`` (2 x MACs), ``network_operations`` is ``train_flops`` (3 x forward x
samples seen) and ``hardware_burden`` is ``hardware_burden_flops`` (devices x peak x time).
Only runs with ``status == "ok"`` and a known error are fitted; the others are counted.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from analysis.constants import MEASURED_BENCHMARKS
from analysis.errors import AnalysisError

STATUSES = ("ok", "diverged", "oom", "failed")
REQUIRED_KEYS = ("status", "benchmark", "error")
# result.json key -> column here. Numbers or null.
NUMERIC_KEYS = {
    "error": "error",
    "metric_value": "metric_value",
    "fwd_flops_per_sample": "forward_pass",
    "train_flops": "network_operations",
    "hardware_burden_flops": "hardware_burden",
    "train_time_s": "train_time_s",
    "energy_total_j": "energy_total_j",
    "co2_kg": "co2_kg",
    "train_samples": "train_samples",
    "num_params": "num_params",
    "scale": "scale",
}
POSITIVE_KEYS = ("fwd_flops_per_sample", "train_flops", "hardware_burden_flops")
TEXT_KEYS = ("run_id", "started_at", "workload", "model", "dataset", "device_name", "precision",
             "metric_name")
COLUMNS = ["run_id", "path", "status", "benchmark", "started_at", "year", *TEXT_KEYS[2:],
           *NUMERIC_KEYS.values()]


def _number(value: Any, key: str, path: Path) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnalysisError(f"{path}: key {key!r} is {value!r}; expected a number or null")
    return float(value)


def _year(started_at: Any) -> float:
    """Fractional year of an ISO timestamp (for the polynomial_year fit); NaN if unknown."""
    if not isinstance(started_at, str):
        return math.nan
    ts = pd.to_datetime(started_at, errors="coerce", utc=True)
    if pd.isna(ts):
        return math.nan
    return ts.year + (ts.day_of_year - 1) / 365.25


def read_result(path: Path) -> dict[str, Any]:
    """One result.json as a flat row; bad content raises an error naming the file and key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise AnalysisError(f"{path}: cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise AnalysisError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"{path}: expected one JSON object, got {type(data).__name__}")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise AnalysisError(f"{path}: missing key {key!r} (DESIGN.md result schema)")
    status = data["status"]
    if status not in STATUSES:
        raise AnalysisError(f"{path}: key 'status' is {status!r}; valid: {', '.join(STATUSES)}")
    bench = data["benchmark"]
    if status == "ok" and bench not in MEASURED_BENCHMARKS:
        raise AnalysisError(f"{path}: key 'benchmark' is {bench!r}; valid: "
                            f"{', '.join(MEASURED_BENCHMARKS)}")
    row: dict[str, Any] = {"path": str(path), "status": status, "benchmark": bench}
    for key in TEXT_KEYS:
        v = data.get(key)
        row[key] = None if v is None else str(v)
    for key, col in NUMERIC_KEYS.items():
        row[col] = _number(data.get(key), key, path)
    if status == "ok":
        e = row["error"]
        if not math.isnan(e) and not 0.0 < e < 1.0:
            raise AnalysisError(f"{path}: key 'error' is {e}; must be a fraction in (0, 1) in the "
                                "paper's convention (e.g. 1 - top-1)")
        for key in POSITIVE_KEYS:
            v = row[NUMERIC_KEYS[key]]
            if not math.isnan(v) and v <= 0:
                raise AnalysisError(f"{path}: key {key!r} is {v}; must be positive (unknown is "
                                    "null, never 0)")
    row["year"] = _year(data.get("started_at"))
    return row


def load_runs(root: Optional[str]) -> pd.DataFrame:
    """All runs under ``root`` (recursive), sorted by path.

    A root that does not exist (a fresh clone has no results/ yet) means no runs; the returned
    frame says so in ``attrs["note"]`` so the summary can print it.
    """
    if root is None:
        return pd.DataFrame(columns=COLUMNS)
    base = Path(root)
    if not base.exists():
        df = pd.DataFrame(columns=COLUMNS)
        df.attrs["note"] = f"results.root={root} does not exist: no measured runs"
        return df
    if not base.is_dir():
        raise AnalysisError(f"results.root={root} is not a folder")
    rows = [read_result(p) for p in sorted(base.rglob("result.json")) if p.is_file()]
    return pd.DataFrame(rows, columns=COLUMNS)


def fittable(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that enter the fits: status ok and a known error."""
    if runs.empty:
        return runs
    return runs[(runs["status"] == "ok") & runs["error"].notna()].reset_index(drop=True)
