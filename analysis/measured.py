"""Load this project's measured runs: every ``result.json`` under ``results.root``, and the
``curve.csv`` beside it.

Each run becomes one row under the paper's compute measures: ``forward_pass`` is
``fwd_flops_per_sample`` (2 x MACs), ``network_operations`` is ``train_flops`` (3 x forward x
samples seen) and ``hardware_burden`` is ``hardware_burden_flops`` (devices x peak x time).
Only runs with ``status == "ok"`` and a known error are fitted; the others are counted.

Besides the numbers, each row carries what the fits need to keep unlike runs apart:

- ``dataset`` and ``eval_set`` (``full n=10000``, ``subset n=300``, or ``unrecorded n=300`` for
  files without ``eval_is_subset``): runs are fitted per (benchmark, dataset, eval set);
- ``config_id``: a configuration's identity, so replicates (same configuration, another seed)
  merge into one point. It is the resolved ``config`` minus the keys that do not change what is
  trained (:data:`analysis.constants.NON_IDENTITY_CONFIG_KEYS`); without a ``config``, the
  ``overrides`` minus the same keys; without either, the run is its own configuration;
- ``contended`` (True, False or None when the file predates the field) and the energy methods.

Older files without the fields added for issue 7 (``eval_is_subset``, ``contended``, ``config``)
load; a missing field is null, never a guess.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from analysis.constants import BENCHMARK_DATASET, MEASURED_BENCHMARKS, NON_IDENTITY_CONFIG_KEYS
from analysis.errors import AnalysisError

STATUSES = ("ok", "diverged", "oom", "failed", "interrupted")
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
    "seed": "seed",
    "eval_samples": "eval_samples",
    "num_devices": "num_devices",
    "peak_flops_per_s": "peak_flops_per_s",
}
POSITIVE_KEYS = ("fwd_flops_per_sample", "train_flops", "hardware_burden_flops", "eval_samples")
TEXT_KEYS = ("run_id", "started_at", "workload", "model", "dataset", "device_name", "device_type",
             "precision", "metric_name", "energy_cpu_method", "energy_gpu_method",
             "energy_ram_method")
BOOL_KEYS = ("eval_is_subset", "contended")
COLUMNS = ["run_id", "path", "status", "benchmark", "started_at", "year", *TEXT_KEYS[2:],
           *BOOL_KEYS, "energy_assumptions", "config_id", "config_identity", "identity_basis",
           *NUMERIC_KEYS.values(), "eval_set", "proxy"]

# curve.csv: columns the frontier reads. ``error`` and ``train_flops`` were there from the start;
# ``hardware_burden_flops`` and ``window`` came with issue 7 and may be missing.
CURVE_REQUIRED = ("error", "train_flops")
CURVE_NUMERIC = ("eval_index", "train_flops", "hardware_burden_flops", "error")


def _number(value: Any, key: str, path: Path) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnalysisError(f"{path}: key {key!r} is {value!r}; expected a number or null")
    return float(value)


def _bool(value: Any, key: str, path: Path) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise AnalysisError(f"{path}: key {key!r} is {value!r}; expected true, false or null")


def _year(started_at: Any) -> float:
    """Fractional year of an ISO timestamp (for the polynomial_year fit); NaN if unknown."""
    if not isinstance(started_at, str):
        return math.nan
    ts = pd.to_datetime(started_at, errors="coerce", utc=True)
    if pd.isna(ts):
        return math.nan
    return ts.year + (ts.day_of_year - 1) / 365.25


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_identity_key(key: str) -> bool:
    """False for keys that do not change what is trained (and anything below them)."""
    return not any(key == k or key.startswith(k + ".") for k in NON_IDENTITY_CONFIG_KEYS)


def config_identity(config: Any, overrides: Any, path: Path) -> tuple[str, str]:
    """(identity text, basis) of a run's configuration; see the module docstring.

    The text is canonical JSON, so two runs of one configuration give the same text whatever the
    key order. basis is ``config``, ``overrides`` or ``none`` (the run is its own configuration).
    """
    if config is not None:
        if not isinstance(config, dict):
            raise AnalysisError(f"{path}: key 'config' is {type(config).__name__}; expected an "
                                "object or null")
        flat = {k: v for k, v in _flatten(config).items() if _is_identity_key(k)}
        return json.dumps(flat, sort_keys=True, default=str), "config"
    if overrides is not None:
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise AnalysisError(f"{path}: key 'overrides' is {overrides!r}; expected a list of "
                                "strings or null")
        kept = []
        for o in overrides:
            key = o.lstrip("+~").split("=", 1)[0].strip()
            if _is_identity_key(key) and not key.startswith("hydra."):
                kept.append(o.lstrip("+~").strip())
        return json.dumps(sorted(kept)), "overrides"
    return json.dumps({"run": str(path.parent)}), "none"


def eval_set_label(is_subset: Optional[bool], eval_samples: float) -> str:
    """``full n=N``, ``subset n=N`` or ``unrecorded n=N`` (``n=?`` when the size is unknown)."""
    n = "?" if math.isnan(eval_samples) else f"{int(eval_samples)}"
    kind = {True: "subset", False: "full", None: "unrecorded"}[is_subset]
    return f"{kind} n={n}"


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
    for key in BOOL_KEYS:
        row[key] = _bool(data.get(key), key, path)
    for key, col in NUMERIC_KEYS.items():
        row[col] = _number(data.get(key), key, path)
    ea = data.get("energy_assumptions")
    if ea is not None and not isinstance(ea, dict):
        raise AnalysisError(f"{path}: key 'energy_assumptions' is {ea!r}; expected an object or "
                            "null")
    row["energy_assumptions"] = None if ea is None else json.dumps(ea, sort_keys=True, default=str)
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
    n_eval = row["eval_samples"]
    if not math.isnan(n_eval) and n_eval != int(n_eval):
        raise AnalysisError(f"{path}: key 'eval_samples' is {n_eval}; expected a whole number")
    ident, basis = config_identity(data.get("config"), data.get("overrides"), path)
    row["config_identity"] = ident
    row["config_id"] = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:10]
    row["identity_basis"] = basis
    row["year"] = _year(data.get("started_at"))
    row["eval_set"] = eval_set_label(row["eval_is_subset"], n_eval)
    if row["dataset"] is None:
        row["dataset"] = "unknown"
    # A proxy is any dataset that is not the benchmark's own; an unknown dataset counts as one
    # (nothing says it is the benchmark's data).
    row["proxy"] = row["dataset"] != BENCHMARK_DATASET.get(bench)
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


def read_curve(path: Path) -> pd.DataFrame:
    """One curve.csv: the columns in :data:`CURVE_NUMERIC` as floats (NaN where a cell is empty
    or the column predates issue 7) and ``window`` as text (None where absent).

    Bad content raises an error naming the file, line and column.
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=list(CURVE_REQUIRED))
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise AnalysisError(f"{path}: cannot be parsed as CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in CURVE_REQUIRED if c not in raw.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column(s) {missing} (curve.csv: one row per "
                            "evaluation)")
    out = pd.DataFrame(index=raw.index)
    for col in CURVE_NUMERIC:
        if col not in raw.columns:
            out[col] = math.nan
            continue
        cells = raw[col].str.strip()
        num = pd.to_numeric(cells.where(cells != ""), errors="coerce")
        bad = num.isna() & (cells != "")
        if bad.any():
            i = int(bad.idxmax())
            raise AnalysisError(f"{path}: line {i + 2}, column {col!r} is {raw.at[i, col]!r}; "
                                "expected a number or an empty cell")
        if col != "eval_index" and (num < 0).any():
            i = int((num < 0).idxmax())
            raise AnalysisError(f"{path}: line {i + 2}, column {col!r} is {num[i]}; must be >= 0")
        out[col] = num.astype(float)
    if (out["error"] > 1).any():
        i = int((out["error"] > 1).idxmax())
        raise AnalysisError(f"{path}: line {i + 2}, column 'error' is {out.at[i, 'error']}; must "
                            "be a fraction in [0, 1]")
    out["window"] = raw["window"].where(raw["window"] != "", None) if "window" in raw.columns else None
    out.attrs["has_burden"] = "hardware_burden_flops" in raw.columns
    out.attrs["has_window"] = "window" in raw.columns
    return out


def load_curves(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every evaluation row of the given runs' curve.csv, tagged with the run's ``path``.

    Returns the rows and counts for the report: ``no_curve`` (run folders without curve.csv),
    ``no_burden_column`` and ``no_window_column`` (curves that predate those columns).
    """
    counts = {"no_curve": 0, "no_burden_column": 0, "no_window_column": 0}
    frames = []
    for path in runs["path"] if not runs.empty else []:
        cpath = Path(path).parent / "curve.csv"
        if not cpath.is_file():
            counts["no_curve"] += 1
            continue
        c = read_curve(cpath)
        counts["no_burden_column"] += not c.attrs["has_burden"]
        counts["no_window_column"] += not c.attrs["has_window"]
        c.insert(0, "path", path)
        frames.append(c)
    cols = ["path", *CURVE_NUMERIC, "window"]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return rows[cols], counts
