"""The measured study of issue 15: measured k beside the literature's, the compute-optimal
allocation, and what this hardware does per FLOP. Tables only; :mod:`analysis.pipeline` writes
them as CSV and :mod:`analysis.report` shows them.

Every table is per measured group, (benchmark, dataset, eval set, hardware)
(:data:`analysis.constants.GROUP_KEY`): runs from another device, thread count or precision, a
test subset, or another dataset are never pooled. So ``results.root=results/reference`` fits the
GPU defaults (``nvidia-h200/defaults/``, one run per workload: too few points, said so) apart from
a CPU grid (``<cpu-slug>/<workload>/``), whatever the folders are called.

- :func:`comparison_table` (``measured_vs_literature.csv``): for each measured group and frontier
  measure, k of the compute-efficient frontier's polynomial fit with its run-bootstrap interval
  (:func:`analysis.fits.frontier_run_bootstrap_b`), the literature's polynomial k and pairs-bootstrap
  interval for that benchmark and measure, theory's lower bound k = 4, whether the two intervals
  overlap, and where the measured interval lies against 4. Benchmarks with no measured group get
  a row too (measured columns null), so the table has every benchmark.
- :func:`allocation_budgets` and :func:`allocation_fits` (``allocation_budgets.csv``,
  ``allocation_fits.csv``): the compute-optimal allocation as Hoffmann et al. 2022 (arXiv
  2203.15556, sec. 3.2, "IsoFLOP profiles") read it: group the runs' final points into
  iso-FLOP budgets, take the model size with the lowest error in each budget, and fit
  N_opt ∝ C^a across budgets. See :func:`allocation_budgets` for how budgets are formed.
- :func:`hardware_table` (``measured_hardware.csv``): achieved training FLOP/s and joules per
  FLOP per group, with their methods.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd
import statsmodels.api as sm

from analysis.constants import (
    ALLOCATION_BUDGET_RATIO, BENCHMARK_SPECS, FRONTIER_MEASURES, MEASURED_BENCHMARKS,
    THEORY_K_MIN,
)
from analysis.extrapolate import EnergyPerFlop, kind_words
from analysis.fits import Fit

COMPARISON_COLUMNS = [
    "benchmark", "benchmark_title", "dataset", "proxy", "eval_set", "hardware", "compute_measure",
    "measured_n", "measured_num_runs", "measured_b", "measured_k", "measured_k_ci_low",
    "measured_k_ci_high", "measured_note", "literature_n", "literature_k", "literature_k_ci_low",
    "literature_k_ci_high", "literature_note", "theory_k_min", "intervals_overlap",
    "measured_vs_theory", "comparable",
]
BUDGET_COLUMNS = [
    "benchmark", "dataset", "proxy", "eval_set", "hardware", "budget", "budget_flops",
    "budget_flops_min", "budget_flops_max", "num_configs", "num_sizes", "n_opt_params",
    "n_opt_scale", "n_opt_fwd_flops", "n_opt_error", "n_opt_train_flops", "n_opt_run_ids",
    "at_grid_edge", "used", "note",
]
ALLOCATION_COLUMNS = [
    "benchmark", "dataset", "proxy", "eval_set", "hardware", "size_measure", "a", "a_se", "r2",
    "num_budgets", "num_budgets_at_edge", "num_configs", "note",
]
HARDWARE_COLUMNS = [
    "benchmark", "dataset", "proxy", "eval_set", "hardware", "num_runs",
    "achieved_flops_per_s", "flops_per_s_method", "peak_flops_per_s", "mfu", "j_per_flop",
    "j_per_flop_kind", "energy_methods", "j_per_flop_method", "j_per_flop_num_runs",
]
# Model-size measures of the allocation fit: Hoffmann et al.'s N is the parameter count; the
# forward FLOPs per sample are the size that sets compute (C = 3 x forward x samples), which
# differs from N where an embedding table holds most parameters and costs no FLOPs (NER).
SIZE_MEASURES = {"num_params": "n_opt_params", "fwd_flops_per_sample": "n_opt_fwd_flops"}
MIN_BUDGETS_FOR_EXPONENT = 3  # two budgets give a line through two points: no fit, no error


def _fit_for(fits: list[Fit], group: tuple, measure: str) -> Optional[Fit]:
    return next((f for f in fits if f.group == group and f.compute_measure == measure
                 and f.model_form == "polynomial"), None)


def intervals_overlap(a_lo: float, a_hi: float, b_lo: float, b_hi: float) -> Optional[bool]:
    """True when [a_lo, a_hi] and [b_lo, b_hi] share a point; None when either is unknown."""
    if any(v is None or math.isnan(v) for v in (a_lo, a_hi, b_lo, b_hi)):
        return None
    return bool(a_lo <= b_hi and b_lo <= a_hi)


def versus_theory(lo: float, hi: float, k_min: float = THEORY_K_MIN) -> Optional[str]:
    """Where a k interval lies against theory's lower bound: ``above``, ``below`` or
    ``includes``; None without an interval."""
    if math.isnan(lo) or math.isnan(hi):
        return None
    if lo >= k_min:
        return "above"
    if hi < k_min:
        return "below"
    return "includes"


def comparison_table(groups: list, fits: list[Fit]) -> pd.DataFrame:
    """measured_vs_literature.csv: see the module docstring. Sorted by benchmark, then group."""
    rows = []
    seen = set()
    for g in groups:
        for measure in FRONTIER_MEASURES:
            m = _fit_for(fits, (*g.key, "measured", "frontier"), measure)
            rows.append(_comparison_row(g.benchmark, fits, measure, m, g))
            seen.add(g.benchmark)
    for bench in MEASURED_BENCHMARKS:
        if bench not in seen:
            for measure in FRONTIER_MEASURES:
                rows.append(_comparison_row(bench, fits, measure, None, None))
    df = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    order = {b: i for i, b in enumerate(MEASURED_BENCHMARKS)}
    df["_o"] = df["benchmark"].map(order)
    return (df.sort_values(["_o", "proxy", "dataset", "hardware", "compute_measure"], kind="mergesort")
            .drop(columns="_o").reset_index(drop=True))


def _comparison_row(bench: str, fits: list[Fit], measure: str, m: Optional[Fit], g: Any) -> dict:
    lit = next((f for f in fits if f.source == "literature" and f.benchmark == bench
                and f.compute_measure == measure and f.model_form == "polynomial"), None)
    nan = math.nan
    row = {"benchmark": bench, "benchmark_title": BENCHMARK_SPECS[bench].title,
           "dataset": g.dataset if g else None, "proxy": g.proxy if g else None,
           "eval_set": g.eval_set if g else None, "hardware": g.hardware if g else None,
           "compute_measure": measure, "theory_k_min": THEORY_K_MIN}
    if m is not None:
        row.update(measured_n=m.n, measured_num_runs=m.num_runs, measured_b=m.b, measured_k=m.k,
                   measured_k_ci_low=m.k_ci_low, measured_k_ci_high=m.k_ci_high,
                   measured_note=m.note)
    else:
        row.update(measured_n=nan, measured_num_runs=nan, measured_b=nan, measured_k=nan,
                   measured_k_ci_low=nan, measured_k_ci_high=nan,
                   measured_note=("no frontier: no run of this group has a usable curve.csv"
                                  if g else "no measured runs of this benchmark under results.root"))
    if lit is not None:
        row.update(literature_n=lit.n, literature_k=lit.k, literature_k_ci_low=lit.k_ci_low,
                   literature_k_ci_high=lit.k_ci_high, literature_note=lit.note)
    else:
        row.update(literature_n=nan, literature_k=nan, literature_k_ci_low=nan,
                   literature_k_ci_high=nan, literature_note="no literature fit")
    row["intervals_overlap"] = intervals_overlap(row["measured_k_ci_low"], row["measured_k_ci_high"],
                                                 row["literature_k_ci_low"], row["literature_k_ci_high"])
    row["measured_vs_theory"] = versus_theory(row["measured_k_ci_low"], row["measured_k_ci_high"])
    if g is None:
        row["comparable"] = None
    elif g.proxy:
        row["comparable"] = (f"shape only: {g.dataset} is a proxy for {BENCHMARK_SPECS[bench].title}")
    else:
        row["comparable"] = "same dataset as the literature"
    return row


# --- compute-optimal allocation (Hoffmann et al. 2022) ----------------------------------------

def budgets_of(log_c: np.ndarray, ratio: float = ALLOCATION_BUDGET_RATIO) -> np.ndarray:
    """Budget index of each point: sorted by compute, a point opens a new budget when its compute
    is more than ``ratio`` times the smallest compute of the current budget."""
    order = np.argsort(log_c, kind="mergesort")
    out = np.empty(len(log_c), dtype=int)
    width = math.log10(ratio)
    budget, start = -1, -math.inf
    for i in order:
        if log_c[i] > start + width + 1e-12:
            budget += 1
            start = log_c[i]
        out[i] = budget
    return out


def _configs(g: Any) -> pd.DataFrame:
    """One row per configuration of a group: final training compute and error (replicates
    merged, as in the final-point fits), parameters, scale and forward FLOPs."""
    pts = g.final.get("network_operations")
    if pts is None or pts.empty:
        return pd.DataFrame(columns=["config_id", "C", "error", "num_params", "scale",
                                     "fwd_flops", "run_ids"])
    size = g.runs.groupby("config_id").agg(num_params=("num_params", "mean"),
                                           scale=("scale", "mean"),
                                           fwd_flops=("forward_pass", "mean"))
    d = pts.rename(columns={"network_operations": "C"}).merge(size, left_on="config_id",
                                                               right_index=True, how="left")
    return d[["config_id", "C", "error", "num_params", "scale", "fwd_flops", "run_ids"]]


def allocation_budgets(groups: list) -> pd.DataFrame:
    """allocation_budgets.csv: one row per iso-FLOP budget of each group.

    Budgets: the group's final points (one per configuration, replicates merged) sorted by
    training compute C (``train_flops``), cut wherever a point's C exceeds
    :data:`analysis.constants.ALLOCATION_BUDGET_RATIO` (√2) times the budget's smallest C. The
    scaling grids step model compute and epochs by 2x each, so each anti-diagonal of a grid (scale
    up, epochs down) is one budget. ``budget_flops`` is the geometric mean of the budget's C.
    In each budget the configuration with the lowest error gives N_opt (its parameter count,
    scale and forward FLOPs per sample). A budget enters the exponent fit (``used``) when it
    holds at least two model sizes (distinct parameter counts; else there is no choice).
    ``at_grid_edge``: N_opt is the group's smallest or largest model, so the optimum may lie
    outside the grid (Hoffmann et al. fit a parabola through each profile; a grid of four sizes
    only brackets it).
    """
    rows = []
    for g in groups:
        d = _configs(g).dropna(subset=["C", "error"])
        d = d[(d["C"] > 0) & (d["error"] > 0)]
        if d.empty:
            continue
        d = d.assign(budget=budgets_of(np.log10(d["C"].to_numpy(float))))
        sizes_all = d["num_params"].dropna()
        smallest, largest = (sizes_all.min(), sizes_all.max()) if len(sizes_all) else (math.nan, math.nan)
        for b, bd in d.groupby("budget", sort=True):
            best = bd.loc[bd["error"].idxmin()]
            num_sizes = bd["num_params"].nunique() if bd["num_params"].notna().all() else \
                bd["scale"].nunique()
            edge = (bool(best["num_params"] in (smallest, largest))
                    if not math.isnan(best["num_params"]) else None)
            used = num_sizes >= 2 and not math.isnan(best["num_params"])
            note = "" if used else ("one model size: no choice to make" if num_sizes < 2
                                    else "parameter count not recorded")
            rows.append({
                "benchmark": g.benchmark, "dataset": g.dataset, "proxy": g.proxy,
                "eval_set": g.eval_set, "hardware": g.hardware, "budget": int(b),
                "budget_flops": float(10 ** np.log10(bd["C"].to_numpy(float)).mean()),
                "budget_flops_min": float(bd["C"].min()), "budget_flops_max": float(bd["C"].max()),
                "num_configs": len(bd), "num_sizes": int(num_sizes),
                "n_opt_params": best["num_params"], "n_opt_scale": best["scale"],
                "n_opt_fwd_flops": best["fwd_flops"], "n_opt_error": best["error"],
                "n_opt_train_flops": best["C"], "n_opt_run_ids": best["run_ids"],
                "at_grid_edge": edge, "used": used, "note": note})
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def allocation_fits(groups: list, budgets: pd.DataFrame) -> pd.DataFrame:
    """allocation_fits.csv: the exponent a of N_opt ∝ C^a per group and size measure, by OLS of
    log10 N_opt on log10 budget_flops over the budgets that are ``used``; null with the reason
    when fewer than :data:`MIN_BUDGETS_FOR_EXPONENT` budgets are."""
    rows = []
    for g in groups:
        b = budgets[(budgets["benchmark"] == g.benchmark) & (budgets["dataset"] == g.dataset)
                    & (budgets["eval_set"] == g.eval_set) & (budgets["hardware"] == g.hardware)]
        num_configs = int(b["num_configs"].sum()) if len(b) else 0
        for measure, col in SIZE_MEASURES.items():
            u = b[b["used"].astype(bool)].dropna(subset=[col]) if len(b) else b
            u = u[u[col] > 0] if len(u) else u
            row = {"benchmark": g.benchmark, "dataset": g.dataset, "proxy": g.proxy,
                   "eval_set": g.eval_set, "hardware": g.hardware, "size_measure": measure,
                   "a": math.nan, "a_se": math.nan, "r2": math.nan, "num_budgets": len(u),
                   "num_budgets_at_edge": int(u["at_grid_edge"].fillna(False).astype(bool).sum())
                   if len(u) else 0, "num_configs": num_configs, "note": ""}
            if len(u) < MIN_BUDGETS_FOR_EXPONENT:
                row["note"] = (f"too few budgets: {len(u)} with two or more model sizes "
                               f"(< {MIN_BUDGETS_FOR_EXPONENT})")
            else:
                x = np.log10(u["budget_flops"].to_numpy(float))
                y = np.log10(u[col].to_numpy(float))
                res = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
                row["a"] = float(res.params[1])
                row["a_se"] = float(res.bse[1]) if res.df_resid > 0 else math.nan
                row["r2"] = float(res.rsquared) if np.ptp(y) > 0 else math.nan
                if row["num_budgets_at_edge"]:
                    row["note"] = (f"{row['num_budgets_at_edge']} of {len(u)} budgets chose the "
                                   "grid's smallest or largest model: the optimum may lie outside "
                                   "the grid")
            rows.append(row)
    return pd.DataFrame(rows, columns=ALLOCATION_COLUMNS)


# --- hardware -----------------------------------------------------------------------------------

FLOPS_PER_S_METHOD = ("train_flops / train_time_s per run (the same window: every training "
                      "step), median over the group's runs that were not contended")


def hardware_table(groups: list, energy: list[EnergyPerFlop]) -> pd.DataFrame:
    """measured_hardware.csv: per group, the median achieved training FLOP/s and MFU against the
    run's theoretical peak, and the median J/FLOP per energy method set (one row each), with
    how each was obtained. Contended runs have their time and energy blanked already
    (:func:`analysis.points.build_groups`)."""
    rows = []
    for g in groups:
        r = g.runs.dropna(subset=["network_operations", "train_time_s"])
        r = r[(r["network_operations"] > 0) & (r["train_time_s"] > 0)]
        rate = r["network_operations"] / r["train_time_s"]
        peak = r["peak_flops_per_s"].dropna()
        mfu = (rate / r["peak_flops_per_s"]).dropna()
        base = {"benchmark": g.benchmark, "dataset": g.dataset, "proxy": g.proxy,
                "eval_set": g.eval_set, "hardware": g.hardware, "num_runs": len(r),
                "achieved_flops_per_s": float(rate.median()) if len(rate) else math.nan,
                "flops_per_s_method": FLOPS_PER_S_METHOD,
                "peak_flops_per_s": float(peak.median()) if len(peak) else math.nan,
                "mfu": float(mfu.median()) if len(mfu) else math.nan}
        es = [e for e in energy if e.group == g.key and e.measure == "network_operations"]
        if not es:
            rows.append(dict(base, j_per_flop=math.nan, j_per_flop_kind=None, energy_methods=None,
                             j_per_flop_method="no run with both energy and train_flops",
                             j_per_flop_num_runs=0))
        for e in es:
            rows.append(dict(base, j_per_flop=e.j_per_flop, j_per_flop_kind=kind_words(e.kind),
                             energy_methods=e.methods,
                             j_per_flop_method=f"energy_total_j / {e.divides_by} per run, median "
                                               "of the runs not contended",
                             j_per_flop_num_runs=e.n_runs))
    return pd.DataFrame(rows, columns=HARDWARE_COLUMNS)


# --- what the measurements can and cannot say ------------------------------------------------

SCOPE_STATEMENT = (
    "What these measurements can say: how error falls with training compute for scaled-down "
    "versions of each benchmark's model family, on this hardware, under one training recipe: the "
    "shape of the curve (its exponent k on the compute-efficient frontier, and which model size a "
    "compute budget favours), with FLOPs counted, not estimated, and time and energy measured "
    "with their methods stated. What they cannot say: ImageNet's, COCO's or SQuAD's constants. "
    "Fashion-MNIST, the generated scenes, the cloze QA and Tatoeba are proxies: their errors are "
    "not the benchmarks' errors, and a k measured on them is compared with the literature's k as "
    "a shape, never as a level. The models are a few thousand to a few million parameters trained "
    "for minutes, far below the published models; an exponent measured over one to two decades "
    "of compute need not hold over the literature's eight. A frontier's k depends on the grid "
    "(its widest and longest runs bound it); with one seed per configuration its interval "
    "resamples runs, not seeds (the seed-to-seed spread is measured apart: python -m analysis.compare "
    "on the same grid at two seeds); and J/FLOP and FLOP/s describe this machine and precision only (a CPU's energy is "
    "codecarbon's estimate where no counter exists). Of the default datasets only CoNLL-2003 is "
    "the benchmark's own.")
