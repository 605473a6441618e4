"""The paper's regressions of error on compute, with bootstrap intervals for the exponent k.

Model forms (x = log10(compute), e = error as a fraction):

- ``polynomial``:      log10(e) = a + b x            (OLS; compute ~ e^-k with k = 1/|b|)
- ``exponential``:     1/e      = a + b x            (OLS)
- ``polynomial_year``: log10(e) = a + b x + c year   (OLS; ``year_coef`` = c)
- ``quantile_q{q}``:   log10(e) = a + b x at quantile q (statsmodels QuantReg; the frontier)

The OLS fits are exactly the notebooks' ``ols('I(np.log10(err)) ~ I(np.log10(compute))')``:
rows missing either variable are dropped and the standard errors are the classical ones. For
QuantReg, statsmodels' defaults are kept (IRLS, robust covariance, Epanechnikov kernel,
Hall-Sheather bandwidth) and R^2 is its pseudo R^2 (``prsquared``, Koenker and Machado 1999).

A fit with under 3 residual degrees of freedom (n - 2 < 3 for the two-coefficient forms, n - 3 < 3
for ``polynomial_year``) gets its estimate but no k interval and no confidence band: with one or
two residual d.o.f. the t quantile and a bootstrap over three points say nothing useful.

Each fit is one row of fits.csv, identified by ``benchmark``, ``dataset``, ``eval_set``,
``source``, ``points``, ``compute_measure`` and ``model_form``:

- ``dataset``: the literature rows carry the benchmark's own dataset
  (:data:`analysis.constants.BENCHMARK_DATASET`); measured rows the runs' ``dataset``.
- ``eval_set``: ``published`` for the literature; for measured runs ``full n=N``,
  ``subset n=N`` or ``unrecorded n=N`` (the result.json predates ``eval_is_subset``).
- ``points``: ``published`` (the literature), ``final`` (one point per measured configuration,
  replicates merged) or ``frontier`` (the compute-efficient frontier over every evaluation in
  the runs' curve.csv; polynomial and exponential forms, training-compute measures only).
- ``hardware``: measured rows only (empty for the literature), the runs' device, CPU threads and
  precision (:func:`analysis.measured.hardware_label`); runs on other hardware are other fits.

Intervals for k: a pairs bootstrap of the points for ``published`` and ``final`` fits. Frontier
points share runs (one run gives several points), so resampling the points would treat them as
independent draws; the polynomial frontier fit's k interval instead resamples *runs* with
replacement, rebuilds the frontier from the resampled runs' curve.csv rows and refits
(:func:`frontier_run_bootstrap_b`; a cluster bootstrap, Davison and Hinkley 1997, sec. 3.8). It
needs at least :data:`MIN_RUNS_FOR_RUN_BOOTSTRAP` runs behind the frontier. Frontier fits get no
confidence band either way.
- ``proxy``: true for a measured dataset that is not the benchmark's own.
- ``n``: distinct points (configurations, or frontier points); ``num_runs``: the runs behind
  them (null for the literature).
- ``runs_left_out``: measured fits only, the group's runs that did not enter and why, e.g.
  ``1 without train_flops, 2 contended`` (empty when every run entered).
"""
from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.regression.quantile_regression import QuantReg

from analysis.constants import BENCHMARK_DATASET

FIT_COLUMNS = ["benchmark", "dataset", "eval_set", "source", "points", "proxy", "compute_measure",
               "model_form", "a", "b", "b_se", "r2", "n", "num_runs", "k", "k_ci_low", "k_ci_high",
               "year_coef", "a_se", "year_coef_se", "r2_kind", "note", "runs_left_out",
               "hardware"]
# Fewer residual degrees of freedom than this: no k interval and no confidence band.
MIN_DOF_FOR_INTERVAL = 3
# Fewer runs than this behind a frontier: no run-level bootstrap interval (with one or two runs a
# resample holds the same one or two curves most of the time, and the interval says nothing).
MIN_RUNS_FOR_RUN_BOOTSTRAP = 3


def quantile_form(q: float) -> str:
    return f"quantile_q{q:g}"


@dataclass
class Fit:
    """One fitted (benchmark, source, compute_measure, model_form), or the reason it was not."""

    benchmark: str
    source: str
    compute_measure: str
    model_form: str
    n: int
    a: float = math.nan
    b: float = math.nan
    b_se: float = math.nan
    a_se: float = math.nan
    r2: float = math.nan
    r2_kind: str = ""
    k: float = math.nan
    k_ci_low: float = math.nan
    k_ci_high: float = math.nan
    year_coef: float = math.nan
    year_coef_se: float = math.nan
    note: str = ""
    dataset: str = ""
    eval_set: str = ""
    points: str = "published"
    proxy: bool = False
    num_runs: float = math.nan
    runs_left_out: str = ""  # measured fits: runs of the group that did not enter, and why
    hardware: str = ""  # measured fits: device, CPU threads, precision (empty: literature)
    min_error: float = math.nan  # lowest error among the fitted points
    # For drawing the line and its band (polynomial forms).
    cov: Optional[np.ndarray] = field(default=None, repr=False)
    df_resid: float = math.nan
    x_range: tuple[float, float] = (math.nan, math.nan)

    @property
    def ok(self) -> bool:
        return not math.isnan(self.b)

    def row(self) -> dict:
        return {c: getattr(self, c) for c in FIT_COLUMNS}

    @property
    def group(self) -> tuple[str, str, str, str, str, str]:
        """(benchmark, dataset, eval_set, hardware, source, points): the data a fit was made on."""
        return (self.benchmark, self.dataset, self.eval_set, self.hardware, self.source,
                self.points)

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text


def k_from_b(b: float) -> float:
    """k = 1/|b| for a falling error (b < 0); undefined (NaN) when error does not fall."""
    return 1.0 / abs(b) if b < 0 else math.nan


def k_interval(b_lo: float, b_hi: float) -> tuple[float, float]:
    """Map a percentile interval of b to k = -1/b (monotone for b < 0).

    If the upper end of b reaches 0 the interval for k is unbounded above (inf); if the whole
    interval is >= 0, k is undefined.
    """
    if math.isnan(b_lo) or math.isnan(b_hi) or b_lo >= 0:
        return math.nan, math.nan
    return -1.0 / b_lo, (-1.0 / b_hi if b_hi < 0 else math.inf)


# --- bootstrap: vectorised over resamples -----------------------------------------------------

def _boot_ols_slope(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    xb, yb = x[idx], y[idx]
    xc = xb - xb.mean(axis=1, keepdims=True)
    sxx = (xc * xc).sum(axis=1)
    sxy = (xc * (yb - yb.mean(axis=1, keepdims=True))).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / sxx, np.nan)


def _boot_ols_multi(X: np.ndarray, y: np.ndarray, idx: np.ndarray, coef: int) -> np.ndarray:
    Xb, yb = X[idx], y[idx]
    xtx = np.einsum("bni,bnj->bij", Xb, Xb)
    xty = np.einsum("bni,bn->bi", Xb, yb)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cond = np.linalg.cond(xtx)
    good = np.isfinite(cond) & (cond < 1e12)
    out = np.full(len(idx), np.nan)
    if good.any():
        out[good] = np.linalg.solve(xtx[good], xty[good][..., None])[:, coef, 0]
    return out


def irls_quantile_batched(x: np.ndarray, y: np.ndarray, q: float, max_iter: int = 1000,
                          p_tol: float = 1e-6) -> np.ndarray:
    """statsmodels' QuantReg IRLS for ``y = a + b x`` (same start, weights and stopping rule),
    run on a batch of resamples at once.

    ``x`` and ``y`` are (B, n); returns (B, 2) = (a, b). statsmodels solves
    ``(X'WX) beta = X'Wy`` with weights ``W = 1/|check residual|`` until the largest change in
    beta is at most ``p_tol``; with one regressor the 2x2 system is solved in closed form, so a
    thousand bootstrap fits take a fraction of a second instead of a QuantReg call each.
    """
    B = x.shape[0]
    beta = np.ones((B, 2))
    w = np.ones_like(x)  # first pass: X'X (statsmodels starts from xstar = exog)
    active = np.arange(B)
    xa, ya = x, y
    for _ in range(max_iter):
        if active.size == 0:
            break
        s0, s1, s2 = w.sum(1), (w * xa).sum(1), (w * xa * xa).sum(1)
        t0, t1 = (w * ya).sum(1), (w * xa * ya).sum(1)
        det = s0 * s2 - s1 * s1
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a_new = (s2 * t0 - s1 * t1) / det
            b_new = (s0 * t1 - s1 * t0) / det
            resid = ya - a_new[:, None] - b_new[:, None] * xa
            resid = np.where(np.abs(resid) < 1e-6, np.where(resid >= 0, 1e-6, -1e-6), resid)
            w = 1.0 / np.abs(np.where(resid < 0, q * resid, (1 - q) * resid))
            diff = np.maximum(np.abs(a_new - beta[active, 0]), np.abs(b_new - beta[active, 1]))
        beta[active, 0], beta[active, 1] = a_new, b_new
        keep = ~(diff <= p_tol)  # NaN (singular resample) stops too
        bad = ~np.isfinite(diff)
        beta[active[bad]] = np.nan
        active, xa, ya, w = active[keep], xa[keep], ya[keep], w[keep]
    return beta


def bootstrap_b(kind: str, x: np.ndarray, y: np.ndarray, year: Optional[np.ndarray], q: float,
                resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap (pairs, with replacement) draws of the compute coefficient b."""
    n = len(x)
    idx = rng.integers(0, n, size=(resamples, n))
    if kind == "polynomial":
        return _boot_ols_slope(x, y, idx)
    if kind == "polynomial_year":
        X = np.column_stack([np.ones(n), x, year])
        return _boot_ols_multi(X, y, idx, coef=1)
    if kind == "quantile":
        xb = x[idx]
        flat = np.ptp(xb, axis=1) == 0  # a resample whose x has no spread has no slope
        out = irls_quantile_batched(xb, y[idx], q)[:, 1]
        out[flat] = np.nan
        return out
    raise ValueError(kind)


# --- one fit ----------------------------------------------------------------------------------

def _too_few(fit: Fit, need: int, what: str = "points") -> Fit:
    fit.note = f"too few {what}: n={fit.n} < {need}"
    return fit


def fit_one(data: pd.DataFrame, benchmark: str, source: str, measure: str, form: str, q: float,
            min_points: int, resamples: int, ci_level: float, rng: np.random.Generator, *,
            dataset: str = "", eval_set: str = "", points: str = "published", proxy: bool = False,
            num_runs: float = math.nan, interval: bool = True) -> Fit:
    """Fit one model form of error on one compute measure; never raises on thin data.

    ``interval=False`` gives the estimate without a k interval or confidence band (used for
    frontier points, which share runs and are not independent draws). The keyword-only
    arguments label the fit (see the module docstring).
    """
    name = quantile_form(q) if form == "quantile" else form
    cols = [measure, "error"] + (["year"] if form == "polynomial_year" else [])
    d = data.dropna(subset=cols)
    fit = Fit(benchmark, source, measure, name, n=len(d), dataset=dataset, eval_set=eval_set,
              points=points, proxy=proxy, num_runs=num_runs)
    if len(d):
        fit.min_error = float(d["error"].min())
    need = min_points + (1 if form == "polynomial_year" else 0)
    if len(d) < need:
        return _too_few(fit, need)
    x = np.log10(d[measure].to_numpy(float))
    e = d["error"].to_numpy(float)
    fit.x_range = (float(x.min()), float(x.max()))
    if np.ptp(x) == 0:
        fit.note = "compute has no spread: every point has the same value"
        return fit
    y = 1.0 / e if form == "exponential" else np.log10(e)
    X = sm.add_constant(x, has_constant="add")
    year = None
    if form == "polynomial_year":
        year = d["year"].to_numpy(float)
        if np.ptp(year) == 0:
            fit.note = "year is constant: the year term is not identifiable"
            return fit
        X = np.column_stack([X, year])
        if np.linalg.matrix_rank(X) < 3:
            fit.note = "year and compute are collinear: the year term is not identifiable"
            return fit

    if form == "quantile":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = QuantReg(y, X).fit(q=q)
        fit.r2, fit.r2_kind = float(res.prsquared), "pseudo (Koenker-Machado)"
        msgs = sorted({type(w.message).__name__ for w in caught
                       if "Convergence" in type(w.message).__name__
                       or "IterationLimit" in type(w.message).__name__})
        if msgs:
            fit.note = "QuantReg: " + ", ".join(msgs)
    else:
        res = sm.OLS(y, X).fit()
        fit.r2, fit.r2_kind = float(res.rsquared), "OLS"
        fit.cov = np.asarray(res.cov_params())
        fit.df_resid = float(res.df_resid)
    params, bse = np.asarray(res.params, float), np.asarray(res.bse, float)
    fit.a, fit.b, fit.a_se, fit.b_se = params[0], params[1], bse[0], bse[1]
    if form == "polynomial_year":
        fit.year_coef, fit.year_coef_se = params[2], bse[2]
    num_coef = 3 if form == "polynomial_year" else 2
    dof = len(d) - num_coef
    no_interval = ""
    if dof < MIN_DOF_FOR_INTERVAL:
        no_interval = (f"n-{num_coef}={dof} residual d.o.f. (< {MIN_DOF_FOR_INTERVAL}): no k "
                       "interval or confidence band")
    elif not interval:
        no_interval = "frontier points share runs, not independent: no k interval or band"
    if no_interval:
        fit.cov = None  # no band either
    if form == "exponential":
        if no_interval:
            fit.add_note(no_interval)
        return fit  # k is defined for the polynomial (power-law) forms only
    fit.k = k_from_b(fit.b)
    if math.isnan(fit.k):
        fit.add_note("b >= 0: error does not fall with compute, k undefined")
    if no_interval:
        fit.add_note(no_interval)
    elif resamples > 0:
        kind = "quantile" if form == "quantile" else form
        draws = bootstrap_b(kind, x, y, year, q, resamples, rng)
        draws = draws[np.isfinite(draws)]
        if len(draws) >= max(10, resamples // 2):
            alpha = (1.0 - ci_level) / 2.0
            lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
            fit.k_ci_low, fit.k_ci_high = k_interval(float(lo), float(hi))
    return fit


FORMS = ("polynomial", "exponential", "polynomial_year", "quantile")
# On the frontier only the two forms of the paper's main text: the year form needs publication
# years, and a quantile of a frontier is a frontier of a frontier.
FRONTIER_FORMS = ("polynomial", "exponential")


def fit_all(points: pd.DataFrame, source: str, measures: tuple[str, ...], benchmarks: tuple[str, ...],
            q: float, min_points: int, resamples: int, ci_level: float, seed: int) -> list[Fit]:
    """Every (benchmark, measure, form) for the literature, in a fixed order.

    Each fit's random stream derives from ``seed``, the benchmark and the form, so adding or
    dropping one benchmark does not change the intervals of the others.
    """
    fits = []
    for bi, bench in enumerate(benchmarks):
        data = points[points["benchmark"] == bench]
        if data.empty:
            continue
        for measure in measures:
            for fi, form in enumerate(FORMS):
                # same stream for every measure: identical data give identical intervals
                rng = np.random.default_rng([seed, bi, fi])
                fits.append(fit_one(data, bench, source, measure, form, q, min_points, resamples,
                                    ci_level, rng, dataset=BENCHMARK_DATASET.get(bench, bench),
                                    eval_set="published", points="published"))
    return fits


def fit_measured(groups: list, measures: tuple[str, ...], q: float, min_points: int,
                 resamples: int, ci_level: float, seed: int) -> list[Fit]:
    """Every measured group (:class:`analysis.points.MeasuredGroup`) on its own: the final points
    under every measure and form, then the frontier under its measures and forms.

    Random streams derive from ``seed``, a checksum of the group and the form, so one group's
    intervals do not depend on which other groups exist.
    """
    fits = []
    for grp in groups:
        label = dict(dataset=grp.dataset, eval_set=grp.eval_set, proxy=grp.proxy)
        for points, forms, table in (("final", FORMS, grp.final),
                                     ("frontier", FRONTIER_FORMS, grp.frontier)):
            stream = zlib.crc32("|".join((*grp.key, points)).encode("utf-8"))
            for measure in measures:
                if measure not in table:
                    continue
                data = table[measure]
                num_runs = (float(data["num_runs"].sum()) if "num_runs" in data and len(data)
                            else float(data["run_id"].nunique()) if "run_id" in data else math.nan)
                _, why = grp.entered.get((points, measure), (0, {}))
                left_out = ", ".join(f"{n} {reason}" for reason, n in why.items())
                for fi, form in enumerate(forms):
                    rng = np.random.default_rng([seed, stream, fi])
                    f = fit_one(data, grp.benchmark, "measured", measure, form, q, min_points,
                                resamples, ci_level, rng, points=points, num_runs=num_runs,
                                interval=points == "final", **label)
                    f.runs_left_out = left_out
                    f.hardware = grp.hardware
                    if points == "frontier" and form == "polynomial":
                        _run_bootstrap_interval(f, grp.curve_rows.get(measure), measure, min_points,
                                                resamples, ci_level,
                                                np.random.default_rng([seed, stream, 77]))
                    fits.append(f)
    return fits


def frontier_run_bootstrap_b(rows: pd.DataFrame, measure: str, min_points: int, resamples: int,
                             rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws of the frontier's polynomial slope b, resampling runs.

    ``rows``: every usable curve.csv row of a group (columns ``path``, ``measure``, ``error``;
    compute and error > 0). Each draw picks as many runs as there are, with replacement, keeps
    the rows of the runs drawn, rebuilds the frontier exactly as
    :func:`analysis.points.frontier` does (sorted by compute then error, a row kept when its
    error is below every error at equal or lower compute; a run drawn twice adds nothing) and
    fits ``log10(e) = a + b log10(C)`` by OLS. A draw with fewer than ``min_points`` frontier
    points or no spread in compute gives NaN. Vectorised over draws.
    """
    d = rows.sort_values([measure, "error"], kind="mergesort")
    x = np.log10(d[measure].to_numpy(float))
    y_err = d["error"].to_numpy(float)
    run_ids, run_of_row = np.unique(d["path"].to_numpy(), return_inverse=True)
    num_runs = len(run_ids)
    picks = rng.integers(0, num_runs, size=(resamples, num_runs))
    drawn = np.zeros((resamples, num_runs), dtype=bool)
    np.put_along_axis(drawn, picks, True, axis=1)
    mask = drawn[:, run_of_row]  # (draws, rows)
    e = np.where(mask, y_err[None, :], np.inf)
    best_before = np.concatenate([np.full((resamples, 1), np.inf),
                                  np.minimum.accumulate(e, axis=1)[:, :-1]], axis=1)
    keep = mask & (e < best_before)
    w = keep.astype(float)
    y = np.log10(y_err)
    n = w.sum(1)
    sx, sy = w @ x, w @ y
    sxx, sxy = w @ (x * x), w @ (x * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = n * sxx - sx * sx
        b = (n * sxy - sx * sy) / den
    spread = den > 1e-12 * np.maximum(n * sxx, 1.0)
    return np.where((n >= min_points) & spread, b, np.nan)


def _run_bootstrap_interval(fit: Fit, rows: Optional[pd.DataFrame], measure: str, min_points: int,
                            resamples: int, ci_level: float, rng: np.random.Generator) -> None:
    """Give a polynomial frontier fit its k interval from :func:`frontier_run_bootstrap_b`."""
    if not fit.ok or math.isnan(fit.k) or resamples <= 0 or rows is None or rows.empty:
        return
    num_runs = rows["path"].nunique()
    if fit.n - 2 < MIN_DOF_FOR_INTERVAL:
        return  # fit_one already says why (residual d.o.f.)
    if num_runs < MIN_RUNS_FOR_RUN_BOOTSTRAP:
        fit.note = (f"{num_runs} run(s) behind the frontier (< {MIN_RUNS_FOR_RUN_BOOTSTRAP}): no "
                    "run-bootstrap k interval")
        return
    draws = frontier_run_bootstrap_b(rows, measure, min_points, resamples, rng)
    draws = draws[np.isfinite(draws)]
    if len(draws) < max(10, resamples // 2):
        fit.note = (f"run bootstrap: only {len(draws)} of {resamples} resamples had a frontier of "
                    f">= {min_points} points: no k interval")
        return
    alpha = (1.0 - ci_level) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    fit.k_ci_low, fit.k_ci_high = k_interval(float(lo), float(hi))
    fit.note = (f"k interval: bootstrap over the {num_runs} runs with curve.csv rows (frontier "
                "rebuilt from each resample); no confidence band")


def fits_table(fits: list[Fit]) -> pd.DataFrame:
    return pd.DataFrame([f.row() for f in fits], columns=FIT_COLUMNS)


def line_with_band(fit: Fit, xs: np.ndarray, ci_level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Polynomial fit line log10(e) at xs = log10(compute), with its confidence band (of the mean)."""
    from scipy import stats

    X = np.column_stack([np.ones_like(xs), xs])
    yhat = X @ np.array([fit.a, fit.b])
    if fit.cov is None or math.isnan(fit.df_resid) or fit.cov.shape != (2, 2):
        return yhat, yhat, yhat
    se = np.sqrt(np.einsum("ni,ij,nj->n", X, fit.cov, X))
    t = stats.t.ppf(0.5 + ci_level / 2.0, fit.df_resid)
    return yhat, yhat - t * se, yhat + t * se
