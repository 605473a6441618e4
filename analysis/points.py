"""From measured runs to the points a fit sees: groups, replicates, contention and the frontier.

- **Groups.** Measured runs are fitted per (benchmark, dataset, eval set, hardware)
  (:data:`analysis.constants.GROUP_KEY`). A dataset that is not the benchmark's own (``proxy``)
  is never pooled with another dataset nor fitted with the literature; runs evaluated on a
  subset (or on another number of samples) are never pooled with full-test-set runs
  (``eval_set``); runs on other hardware (device, CPU threads or precision:
  :func:`analysis.measured.hardware_label`) are never pooled either, so the GPU defaults under
  ``results/reference/nvidia-h200/`` and a CPU grid under ``results/reference/<cpu>/`` are
  separate fits wherever they sit under ``results.root``. The folder layout plays no part.
- **Replicates.** Runs of one configuration (same ``config_id``: same config apart from seed, run
  name, output paths, measurement settings and speed settings such as ``trainer.compile``) become one point: the mean error and the mean
  compute, with their standard deviations (ddof=1; null for a single run) and the run count. A
  fit's ``n`` counts these points, not runs.
- **Contention.** Hardware burden is devices x peak x *time* (Thompson et al. sec. 2), so a run
  slowed by other jobs inflates it. Runs with ``contended: true`` leave the time-based measures
  (:data:`analysis.constants.TIME_MEASURES`) and joules per FLOP unless
  ``fit.include_contended=true``; ``contended: null`` (older files) counts as not contended and
  is counted apart.
- **Frontier.** From every evaluation row of a group's runs (curve.csv), the compute-efficient
  frontier is the set of non-dominated (compute, error) pairs: for each compute, the lowest error
  any run had reached by then (Kaplan et al. 2020, arXiv 2001.08361, fig. 2; Hoffmann et al. 2022,
  arXiv 2203.15556, sec. 3.1). It is built for the training-compute measures that curve.csv
  records cumulatively (:data:`analysis.constants.FRONTIER_MEASURES`).
- **Accounting.** For every fit (group, points, measure) the group records how many runs entered
  and why each other run did not (``MeasuredGroup.entered``): ``without train_flops`` (the
  result.json has no such number), ``contended`` (left out of a time-based measure),
  ``no usable curve.csv`` and so on, so a run with ``status: ok`` but no FLOPs is never
  reported as fitted.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.constants import (
    BENCHMARK_SPECS, COMPUTE_MEASURES, FRONTIER_MEASURES, GROUP_KEY, TIME_MEASURES,
)
from analysis.measures import ConsolidationFit, consolidate

GROUP_COLUMNS = list(GROUP_KEY)
# Compute measure -> the result.json key it comes from (for "without <key>" in the accounting).
RESULT_KEYS = {"forward_pass": "fwd_flops_per_sample", "network_operations": "train_flops",
               "hardware_burden": "hardware_burden_flops"}
POINT_COLUMNS = ["benchmark", "dataset", "eval_set", "hardware", "proxy", "points", "compute_measure",
                 "config_id", "config", "num_runs", "compute_flops", "compute_flops_std",
                 "error", "error_std", "run_ids", "seeds", "eval_index"]


@dataclass
class MeasuredGroup:
    """The measured runs of one (benchmark, dataset, eval set, hardware), as fit-ready points."""

    benchmark: str
    dataset: str
    eval_set: str
    proxy: bool
    runs: pd.DataFrame  # status-ok runs; time measures null where contention leaves them out
    hardware: str = ""
    # compute measure -> points with columns [measure, "error", "year", ...] (see merge_replicates)
    final: dict[str, pd.DataFrame] = field(default_factory=dict)
    frontier: dict[str, pd.DataFrame] = field(default_factory=dict)
    # frontier measure -> every usable curve.csv row the frontier was built from ([path, measure,
    # error]): what the run-level bootstrap of the frontier's k resamples (analysis.study)
    curve_rows: dict[str, pd.DataFrame] = field(default_factory=dict)
    consolidation: ConsolidationFit | None = None
    # (points, measure) -> (runs that entered the fit, {reason: runs left out}); see accounting
    entered: dict[tuple[str, str], tuple[int, dict[str, int]]] = field(default_factory=dict)

    def accounting(self, points: str, measure: str) -> str:
        """``3 runs; 1 without train_flops, 2 contended`` for one fit of this group."""
        n, why = self.entered.get((points, measure), (0, {}))
        text = f"{n} run{'s' if n != 1 else ''}"
        return text + ("; " + left_out_text(why) if why else "")

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.benchmark, self.dataset, self.eval_set, self.hardware)

    @property
    def label(self) -> str:
        title = BENCHMARK_SPECS[self.benchmark].title
        kind = f"proxy for {title}" if self.proxy else title
        return f"{self.dataset} ({kind}; eval {self.eval_set}; {self.hardware})"

    @property
    def name(self) -> str:
        """File-name stem of the group's own figure."""
        raw = f"measured_{self.benchmark}_{self.dataset}_{self.eval_set}_{self.hardware}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_")

    @property
    def min_error(self) -> float:
        return float(self.runs["error"].min()) if len(self.runs) else math.nan


@dataclass
class MeasuredSummary:
    """Counts the report and the terminal summary state."""

    num_contended: int = 0          # ok runs marked contended
    num_contended_excluded: int = 0  # ... and left out of time-based fits and J/FLOP
    num_contention_unknown: int = 0  # ok runs whose result.json has no contention record
    curve_counts: dict[str, int] = field(default_factory=dict)
    num_runs: int = 0
    num_configs: int = 0


def left_out_text(why: dict[str, int]) -> str:
    """``1 without train_flops, 2 contended`` (empty when no run was left out)."""
    return ", ".join(f"{n} {reason}" for reason, n in why.items())


def _why_final(r: pd.Series, measure: str, include_contended: bool) -> str:
    """Why a run has no value under ``measure`` (see the module docstring, Accounting)."""
    if measure in TIME_MEASURES and r["_contended"] and not include_contended and r["_had_burden"]:
        return "contended"
    if measure == "hardware_burden_consolidated":
        if r["_contended"] and not include_contended:
            return "contended"
        if pd.isna(r["network_operations"]):
            return "without hardware_burden_flops or train_flops"
        return "without hardware_burden_flops (none predicted: no consolidation fit)"
    return f"without {RESULT_KEYS[measure]}"


def _final_accounting(g: pd.DataFrame, measure: str, include_contended: bool) -> tuple[int, dict[str, int]]:
    entered = g[measure].notna() & g["error"].notna()
    why = Counter(_why_final(r, measure, include_contended) for _, r in g[~entered].iterrows())
    return int(entered.sum()), dict(sorted(why.items()))


def _frontier_accounting(g: pd.DataFrame, curves: pd.DataFrame, col: str, excluded: set[str]) -> tuple[int, dict[str, int]]:
    """Runs whose curve.csv gave the frontier at least one usable (compute, error) row."""
    usable = curves.dropna(subset=[col, "error"]) if not curves.empty else curves
    usable = usable[(usable[col] > 0) & (usable["error"] > 0)] if not usable.empty else usable
    has_curve = set(curves["path"]) if not curves.empty else set()
    has_rows = set(usable["path"]) if not usable.empty else set()
    n, why = 0, Counter()
    for path in g["path"]:
        if path not in has_curve:
            why["no usable curve.csv"] += 1
        elif path in excluded:
            why["contended"] += 1
        elif path not in has_rows:
            why[f"curve.csv without {col}"] += 1
        else:
            n += 1
    return n, dict(sorted(why.items()))


def contended_mask(values: pd.Series) -> pd.Series:
    """True where a run says ``contended: true``; False for false and for no record (null)."""
    return values.map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v)).astype(bool)


def _varying_config(runs: pd.DataFrame) -> dict[str, str]:
    """config_id -> the identity keys whose values differ across the group's configurations."""
    parsed = {}
    for cid, ident in runs.groupby("config_id", sort=True)["config_identity"].first().items():
        try:
            obj = json.loads(ident)
        except ValueError:
            obj = ident
        if isinstance(obj, list):
            obj = dict(o.split("=", 1) if "=" in o else (o, "") for o in obj)
        parsed[cid] = obj if isinstance(obj, dict) else {"config": obj}
    keys = sorted({k for d in parsed.values() for k in d})
    varying = [k for k in keys if len({json.dumps(d.get(k), default=str) for d in parsed.values()}) > 1]
    return {cid: " ".join(f"{k}={d.get(k)}" for k in varying) or "(single configuration)"
            for cid, d in parsed.items()}


def merge_replicates(runs: pd.DataFrame, measure: str) -> pd.DataFrame:
    """One point per configuration among runs with both ``measure`` and error known.

    Columns: ``config_id``, ``num_runs``, ``measure`` (mean), ``compute_flops_std``, ``error``
    (mean), ``error_std``, ``year`` (mean start year, for polynomial_year), ``run_ids``, ``seeds``.
    Standard deviations use ddof=1 and are null for a single run.
    """
    d = runs.dropna(subset=[measure, "error"])
    cols = ["config_id", "num_runs", measure, "compute_flops_std", "error", "error_std", "year",
            "run_ids", "seeds"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for cid, g in d.groupby("config_id", sort=True):
        seeds = sorted({int(s) for s in g["seed"].dropna()})
        rows.append({
            "config_id": cid, "num_runs": len(g), measure: float(g[measure].mean()),
            "compute_flops_std": float(g[measure].std(ddof=1)) if len(g) > 1 else math.nan,
            "error": float(g["error"].mean()),
            "error_std": float(g["error"].std(ddof=1)) if len(g) > 1 else math.nan,
            "year": float(g["year"].mean()) if g["year"].notna().any() else math.nan,
            "run_ids": " ".join(str(r) for r in g["run_id"].fillna(g["path"])),
            "seeds": " ".join(map(str, seeds)),
        })
    return pd.DataFrame(rows, columns=cols).sort_values(measure, kind="mergesort").reset_index(drop=True)


def frontier(rows: pd.DataFrame, x: str, y: str = "error") -> pd.DataFrame:
    """Non-dominated rows (lower ``x`` and lower ``y`` are better), sorted by ``x``.

    A row is kept when its ``y`` is strictly below every ``y`` at equal or smaller ``x``: for each
    compute level, the lowest error reached by then. Rows with ``x`` or ``y`` null or not positive
    (nothing trained yet, or an error of 0 that a log scale cannot hold) are left out.
    """
    d = rows.dropna(subset=[x, y])
    d = d[(d[x] > 0) & (d[y] > 0)]
    d = d.sort_values([x, y], kind="mergesort")
    best, keep = math.inf, []
    for i, v in zip(d.index, d[y].to_numpy(float)):
        if v < best:
            keep.append(i)
            best = v
    return d.loc[keep].reset_index(drop=True)


def build_groups(runs: pd.DataFrame, curves: pd.DataFrame, curve_counts: dict[str, int],
                 include_contended: bool, min_points: int) -> tuple[list[MeasuredGroup], MeasuredSummary]:
    """Measured groups with their final and frontier points; ``runs`` are the fittable runs."""
    summary = MeasuredSummary(curve_counts=dict(curve_counts))
    if runs.empty:
        return [], summary
    runs = runs.copy()
    contended = contended_mask(runs["contended"])
    summary.num_runs = len(runs)
    summary.num_contended = int(contended.sum())
    summary.num_contention_unknown = int(runs["contended"].isna().sum())
    runs["_had_burden"] = runs["hardware_burden"].notna()
    if not include_contended:
        summary.num_contended_excluded = summary.num_contended
        # Blank the time-based numbers of contended runs: they drop out of every time-based fit,
        # of the consolidation fit and of J/FLOP, and keep their FLOP counts and error.
        runs.loc[contended, ["hardware_burden", "train_time_s", "energy_total_j"]] = math.nan
    runs["_group"] = runs[GROUP_COLUMNS].astype(str).agg("|".join, axis=1)
    # Consolidated burden per group only: the burden-on-operations relation is never borrowed
    # from another dataset (no pooled fallback for measured runs).
    runs, cons = consolidate(runs, min_points, by="_group", pooled_fallback=False)
    if not include_contended:
        runs.loc[contended, "hardware_burden_consolidated"] = math.nan
    runs = runs.assign(_contended=contended)
    summary.num_configs = int(runs.groupby(["_group", "config_id"]).ngroups)

    groups = []
    for (bench, ds, ev, hw), g in runs.groupby(GROUP_COLUMNS, sort=True):
        grp = MeasuredGroup(bench, ds, ev, bool(g["proxy"].iloc[0]),
                            g.drop(columns=["_group", "_had_burden"]).reset_index(drop=True),
                            hardware=hw, consolidation=cons.get(f"{bench}|{ds}|{ev}|{hw}"))
        for m in COMPUTE_MEASURES:
            grp.final[m] = merge_replicates(grp.runs, m)
            grp.entered[("final", m)] = _final_accounting(g, m, include_contended)
        c = curves[curves["path"].isin(g["path"])] if not curves.empty else curves
        for m, col in FRONTIER_MEASURES.items():
            src = c
            excluded: set[str] = set()
            if m in TIME_MEASURES and not include_contended and not c.empty:
                excluded = set(g.loc[g["_contended"], "path"])
                src = c[~c["path"].isin(excluded)]
            grp.entered[("frontier", m)] = _frontier_accounting(g, c, col, excluded)
            usable = src.dropna(subset=[col, "error"]) if not src.empty else src
            grp.curve_rows[m] = (usable.loc[(usable[col] > 0) & (usable["error"] > 0),
                                            ["path", col, "error"]].rename(columns={col: m})
                                 .reset_index(drop=True) if len(usable)
                                 else pd.DataFrame(columns=["path", m, "error"]))
            f = frontier(src, col) if not src.empty else src
            f = f.merge(g[["path", "run_id", "config_id", "year"]], on="path", how="left") if len(f) else f
            grp.frontier[m] = (f.rename(columns={col: m}) if len(f)
                               else pd.DataFrame(columns=[m, "error", "year"]))
        groups.append(grp)
    return groups, summary


def points_table(groups: list[MeasuredGroup]) -> pd.DataFrame:
    """Every point behind every measured fit, long format (written as measured_points.csv)."""
    rows = []
    for grp in groups:
        labels = _varying_config(grp.runs)
        base = {"benchmark": grp.benchmark, "dataset": grp.dataset, "eval_set": grp.eval_set,
                "hardware": grp.hardware, "proxy": grp.proxy}
        for m, pts in grp.final.items():
            for _, p in pts.iterrows():
                rows.append({**base, "points": "final", "compute_measure": m,
                             "config_id": p["config_id"], "config": labels.get(p["config_id"], ""),
                             "num_runs": int(p["num_runs"]), "compute_flops": p[m],
                             "compute_flops_std": p["compute_flops_std"], "error": p["error"],
                             "error_std": p["error_std"], "run_ids": p["run_ids"],
                             "seeds": p["seeds"], "eval_index": math.nan})
        for m, pts in grp.frontier.items():
            for _, p in pts.iterrows():
                rows.append({**base, "points": "frontier", "compute_measure": m,
                             "config_id": p["config_id"], "config": labels.get(p["config_id"], ""),
                             "num_runs": 1, "compute_flops": p[m], "compute_flops_std": math.nan,
                             "error": p["error"], "error_std": math.nan, "run_ids": p["run_id"],
                             "seeds": "", "eval_index": p["eval_index"]})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)
