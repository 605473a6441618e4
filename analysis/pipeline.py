"""The analysis end to end: load and check everything, fit, extrapolate, draw, then write.

The config's numbers and ``out_dir``'s writability are checked first, before any input is read.
Nothing is written until every input has been read and checked, and each file is written
atomically (temporary file, then rename), so a bad input leaves ``out_dir`` untouched. Bad
measured runs stop everything with ``strict`` (the default) or are skipped with one warning
line each (``strict=false``, see :mod:`analysis.measured`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import measured as measured_mod
from analysis.config import validate
from analysis.constants import BENCHMARK_DATASET, BENCHMARK_SPECS, BENCHMARKS, COMPUTE_MEASURES
from analysis.errors import AnalysisError
from analysis.extrapolate import EnergyPerFlop, energy_per_flop, extrapolate
from analysis.figure_cache import FigureCache
from analysis.figures import (
    Figure, benchmark_figure, epoch_figure, k_summary_figure, measured_group_figure,
    within_family_figure,
)
from analysis.fits import Fit, fit_all, fit_measured, fit_one, fits_table
from common.atomic import unwritable_reason, write_atomic
from analysis.literature import load_epoch, load_thompson, locate_epoch, locate_thompson
from analysis.measured import RunScan
from analysis.measures import consolidate
from analysis.points import MeasuredGroup, MeasuredSummary, build_groups, points_table
from analysis.report import build_html, measured_lines, study_lines, summary_lines
from analysis.study import allocation_budgets, allocation_fits, comparison_table, hardware_table

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """What a run produced, in memory (also what tests inspect)."""

    fits: list[Fit]
    fits_df: pd.DataFrame
    extrapolations: pd.DataFrame
    within: pd.DataFrame
    within_fits: list[Fit]
    literature: pd.DataFrame
    runs: pd.DataFrame
    figures: list[Figure]
    summary: list[str]
    groups: list[MeasuredGroup] = field(default_factory=list)
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    measured: MeasuredSummary = field(default_factory=MeasuredSummary)
    energy: list[EnergyPerFlop] = field(default_factory=list)
    # The measured study (analysis.study): measured_vs_literature.csv, allocation_budgets.csv,
    # allocation_fits.csv, measured_hardware.csv
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    budgets: pd.DataFrame = field(default_factory=pd.DataFrame)
    allocation: pd.DataFrame = field(default_factory=pd.DataFrame)
    hardware: pd.DataFrame = field(default_factory=pd.DataFrame)
    scan: RunScan | None = None  # what was found under results.root and what was left out
    #: Where the time went: read, fits, figures, within_family, write (seconds).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    figures_drawn: int = 0
    figures_cached: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = math.nan


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, float_format="%.6g").encode("utf-8")


def check_out_dir(out_dir: str) -> None:
    """Fail in one line, before any work, if ``out_dir`` cannot be written.

    The folder (or, when it does not exist yet, the nearest folder above it) must be a folder in
    which a file can be created: a temporary file is created there and removed at once, so
    nothing is left behind. ``out_dir/figures`` is checked too when it exists.
    """
    path = Path(out_dir)
    folders = [path] + ([path / "figures"] if (path / "figures").is_dir() else [])
    for folder in folders:
        reason = unwritable_reason(folder)
        if reason:
            raise AnalysisError(f"out_dir={out_dir}: cannot write: {reason}; choose a writable out_dir")


def run(cfg: Any) -> Outputs:
    """Run the whole analysis for a composed config (see analysis.config.AnalysisConfig)."""
    t0 = time.perf_counter()
    validate(cfg)
    check_out_dir(cfg.out_dir)
    lit_cfg = cfg.literature

    # 1. Read and check every input before any work or output.
    sources, frames, notes = [], [], []
    for name in BENCHMARKS:
        spec = BENCHMARK_SPECS[name]
        src = locate_thompson(spec, lit_cfg.root, lit_cfg.cache_dir, lit_cfg.download,
                              lit_cfg.shared_root)
        df = load_thompson(spec, src)
        sources.append(src)
        frames.append(df)
        if df.attrs.get("dropped_no_metric"):
            notes.append(f"{spec.title}: {df.attrs['dropped_no_metric']} row(s) without "
                         f"{spec.metric_column} left out.")
        if not src.matches_pin:
            notes.append(f"{src.path} differs from the pinned sha256: results may not match the "
                         "paper.")
    literature = pd.concat(frames, ignore_index=True)
    epoch = None
    if lit_cfg.epoch:
        esrc = locate_epoch(lit_cfg.root, lit_cfg.cache_dir, lit_cfg.download, lit_cfg.shared_root)
        if esrc is not None:
            epoch = load_epoch(esrc)
            sources.append(esrc)
        else:
            notes.append("Epoch AI database not available: context figure skipped "
                         "(literature.download=true fetches it).")
    scan = measured_mod.scan_runs(cfg.results.root, cfg.strict)
    runs_all = scan.runs
    if scan.note:
        runs_all.attrs["note"] = scan.note
        notes.append(scan.note + ".")
    runs = measured_mod.fittable(runs_all)
    curves, curve_counts = measured_mod.load_curves(runs, cfg.strict, scan.bad_curves)
    for line in scan.warnings():
        log.warning("warning: %s", line)
        notes.append(line[0].upper() + line[1:] + ".")

    counts = None
    if cfg.within_family.enabled:
        from analysis.within_family import WithinFamilyCounts

        wcfg = cfg.within_family
        families = {f: list(m) for f, m in wcfg.families.items() if not wcfg.only or f in wcfg.only}
        counts = WithinFamilyCounts(families, wcfg.weights, cfg.cache_dir)
        counts.start()  # a cold cache is counted in a worker while the rest runs
    read_s = time.perf_counter() - t0
    try:
        out = _analyse(cfg, literature, runs_all, runs, curves, curve_counts, epoch, counts, notes,
                       scan)
    except BaseException:
        if counts is not None:
            counts.cancel()
        raise
    out.scan = scan
    t_write = time.perf_counter()
    out.files = _write(cfg, out, sources, runs, notes)
    out.stage_seconds = {"read": read_s, **out.stage_seconds, "write": time.perf_counter() - t_write}
    out.seconds = time.perf_counter() - t0
    return out


def _analyse(cfg, literature, runs_all, runs, curves, curve_counts, epoch, counts, notes,
             scan: RunScan) -> Outputs:
    stage: dict[str, float] = {}
    t_stage = time.perf_counter()
    fit_cfg = cfg.fit
    q, min_pts = fit_cfg.quantile, fit_cfg.min_points
    common = dict(q=q, min_points=min_pts, resamples=fit_cfg.bootstrap_resamples,
                  ci_level=fit_cfg.ci_level, seed=fit_cfg.bootstrap_seed)

    # 2. Compute measures: consolidate hardware burden per source (measured: per group).
    literature, lit_cons = consolidate(literature, min_pts)
    for bench, c in lit_cons.items():
        if c is not None and c.num_predicted:
            notes.append(f"Consolidated hardware burden, {BENCHMARK_SPECS[bench].title} "
                         f"(literature): {c.describe()}.")
    groups, msum = build_groups(runs, curves, curve_counts, fit_cfg.include_contended, min_pts)
    for g in groups:
        if g.consolidation is not None and g.consolidation.num_predicted:
            notes.append(f"Consolidated hardware burden, measured {g.label}: "
                         f"{g.consolidation.describe()}.")

    # 3. Fits: the literature per benchmark; measured runs per (benchmark, dataset, eval set,
    # hardware): analysis.constants.GROUP_KEY.
    fits = fit_all(literature, "literature", COMPUTE_MEASURES, BENCHMARKS, **common)
    fits += fit_measured(groups, COMPUTE_MEASURES, **common)
    fits_df = fits_table(fits)

    # 4. Extrapolations. J/FLOP from runs whose time-based numbers survived the contention rule.
    best = {(b, BENCHMARK_DATASET.get(b, b), "published", "", "literature", "published"):
            float(d["error"].min()) for b, d in literature.groupby("benchmark")}
    for g in groups:
        best[(*g.key, "measured", "final")] = g.min_error
    eruns = pd.concat([g.runs for g in groups], ignore_index=True) if groups else pd.DataFrame()
    energy = energy_per_flop(eruns, by_group=False) + energy_per_flop(eruns, by_group=True)
    ext_cfg = cfg.extrapolation
    extrap = extrapolate(fits, best, {k: list(v) for k, v in ext_cfg.targets.items()}, energy,
                         ext_cfg.carbon_intensity_g_per_kwh, ext_cfg.price_usd_per_kwh)
    # The measured study: measured k beside the literature's, the compute-optimal allocation,
    # FLOP/s and J/FLOP per group.
    comparison = comparison_table(groups, fits)
    budgets = allocation_budgets(groups)
    allocation = allocation_fits(groups, budgets)
    hw_table = hardware_table(groups, energy)

    # 5. Figures (in memory). A proxy dataset never goes on the literature's axes: each measured
    # group gets its own figure, and only the benchmark's own dataset joins the literature's.
    stage["fits"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    formats, dpi = list(cfg.figures.formats), cfg.figures.dpi
    cache = FigureCache(Path(cfg.cache_dir) / "figures")
    figures: list[Figure] = []
    for bench in BENCHMARKS:
        lit_b = literature[literature["benchmark"] == bench]
        own = [g for g in groups if g.benchmark == bench and not g.proxy]
        proxies = [g for g in groups if g.benchmark == bench and g.proxy]
        f = cache.render(benchmark_figure, bench, lit_b, own, proxies, fits, q, fit_cfg.ci_level, formats, dpi)
        if f is not None:
            figures.append(f)
    for g in groups:
        f = cache.render(measured_group_figure, g, fits, fit_cfg.ci_level, formats, dpi)
        if f is not None:
            figures.append(f)
    ks = cache.render(k_summary_figure, fits, formats, dpi)
    if ks is not None:
        figures.append(ks)
    if epoch is not None:
        ef = cache.render(epoch_figure, epoch, literature, runs, formats, dpi)
        if ef is not None:
            figures.append(ef)

    stage["figures"] = time.perf_counter() - t_stage
    t_stage = time.perf_counter()
    # 6. Within-family scaling (the counts were running meanwhile).
    within = pd.DataFrame()
    within_fits: list[Fit] = []
    if counts is not None:
        within = counts.finish()
        for fi, (family, d) in enumerate(within.groupby("family", sort=False)):
            pts = pd.DataFrame({"forward_pass": d["fwd_flops"], "error": d["top1_error"]})
            rng = np.random.default_rng([fit_cfg.bootstrap_seed, 99, fi])
            f = fit_one(pts, family, "within_family", "forward_pass", "polynomial", q, min_pts,
                        fit_cfg.bootstrap_resamples, fit_cfg.ci_level, rng)
            within_fits.append(f)
        wf = cache.render(within_family_figure, within, within_fits, formats, dpi)
        if wf is not None:
            figures.insert(1 if figures else 0, wf)

    stage["within_family"] = time.perf_counter() - t_stage
    summary = summary_lines(fits, within_fits)
    if scan.note:
        summary.append(f"note: {scan.note}")
    elif scan.num_files:
        summary += measured_lines(len(runs_all), msum, groups, fit_cfg.include_contended,
                                  runs=runs_all, scan=scan)
        summary += study_lines(comparison, allocation)
    return Outputs(fits=fits, fits_df=fits_df, extrapolations=extrap, within=within,
                   within_fits=within_fits, literature=literature, runs=runs_all, figures=figures,
                   summary=summary, groups=groups, points=points_table(groups), measured=msum,
                   energy=energy, comparison=comparison, budgets=budgets, allocation=allocation,
                   hardware=hw_table, stage_seconds=stage, figures_drawn=cache.misses,
                   figures_cached=cache.hits)


def _write(cfg, out: Outputs, sources, runs, notes) -> list[Path]:
    out_dir = Path(cfg.out_dir)
    files: list[tuple[Path, bytes]] = [
        (out_dir / "fits.csv", _csv(out.fits_df)),
        (out_dir / "extrapolations.csv", _csv(out.extrapolations)),
    ]
    if not out.points.empty:
        files.append((out_dir / "measured_points.csv", _csv(out.points)))
    # The study tables: always written (the comparison has a row per benchmark even without runs).
    files += [(out_dir / "measured_vs_literature.csv", _csv(out.comparison)),
              (out_dir / "allocation_budgets.csv", _csv(out.budgets)),
              (out_dir / "allocation_fits.csv", _csv(out.allocation)),
              (out_dir / "measured_hardware.csv", _csv(out.hardware))]
    if not out.within.empty:
        files.append((out_dir / "within_family.csv", _csv(out.within)))
    for fig in out.figures:
        for fmt, data in fig.data.items():
            files.append((out_dir / "figures" / f"{fig.name}.{fmt}", data))
    html_text = build_html(
        fits=out.fits, fits_df=out.fits_df, extrap=out.extrapolations, within=out.within,
        within_fits=out.within_fits, figures=out.figures, sources=sources, runs=out.runs,
        n_fitted_runs=len(runs), energy=out.energy, notes=notes, points=out.points,
        groups=out.groups, measured=out.measured, scan=out.scan, comparison=out.comparison,
        budgets=out.budgets, allocation=out.allocation, hardware=out.hardware,
        settings={"ci_level": cfg.fit.ci_level, "resamples": cfg.fit.bootstrap_resamples,
                  "carbon_intensity_g_per_kwh": cfg.extrapolation.carbon_intensity_g_per_kwh,
                  "price_usd_per_kwh": cfg.extrapolation.price_usd_per_kwh,
                  "results_root": cfg.results.root,
                  "include_contended": cfg.fit.include_contended, "strict": cfg.strict})
    files.append((out_dir / "report.html", html_text.encode("utf-8")))
    for path, data in files:
        try:
            write_atomic(path, data)
        except OSError as e:  # e.g. the disk filled up after the check in check_out_dir
            raise AnalysisError(f"out_dir={cfg.out_dir}: cannot write {path}: "
                                f"{e.strerror or e}") from None
    return [p for p, _ in files]
