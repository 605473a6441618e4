"""Figures: the paper's error-vs-compute plots with measured runs on them, within-family scaling,
the k summary and the Epoch AI context. Rendered to bytes (PNG for the report, SVG for print) so
nothing touches the disk until every output is ready.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from analysis.constants import (  # noqa: E402
    BENCHMARK_DATASET, BENCHMARK_SPECS, COMPUTE_LABELS, COMPUTE_MEASURES, COMPUTE_SHORT, THEORY_K_MIN,
)
from analysis.fits import Fit, line_with_band, quantile_form  # noqa: E402

MEASURED_STYLE = dict(marker="D", s=46, facecolor="#ff7f0e", edgecolor="black", linewidth=0.8,
                      zorder=5)
# One colour per measured group on a benchmark's own dataset (ColorBrewer Dark2).
GROUP_COLORS = ["#ff7f0e", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
ERROR_TICKS = [0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
ERROR_TICKS_DENSE = [0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3,
                     0.4, 0.5, 0.6, 0.7, 0.85, 1.0]
plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
                     "legend.fontsize": 8, "svg.fonttype": "none", "svg.hashsalt": "computelimits"})


@dataclass
class Figure:
    name: str
    title: str
    data: dict[str, bytes]  # format -> bytes


def _render(fig, name: str, title: str, formats: list[str], dpi: int) -> Figure:
    data = {}
    for fmt in formats:
        buf = io.BytesIO()
        # Fixed metadata so reruns give identical files.
        meta = {"Date": None} if fmt == "svg" else ({"Software": None} if fmt == "png" else {})
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
        data[fmt] = buf.getvalue()
    plt.close(fig)
    return Figure(name, title, data)


def _pct(v: float, _pos=None) -> str:
    p = v * 100
    return f"{p:.1f}%" if p < 1 else f"{p:.0f}%"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _pow10_label(v: float, _pos=None) -> str:
    """'10¹²' in plain Unicode: as readable as mathtext and far cheaper to lay out."""
    if v <= 0:
        return ""
    e = math.log10(v)
    if abs(e - round(e)) > 1e-9:
        return ""
    return "10" + str(int(round(e))).translate(_SUPERSCRIPT)


def _minor_label(v: float, decades: float) -> str:
    """'2×10¹²' for a minor tick when the axis spans under a decade (it may hold no power of ten,
    so no labelled major tick); mantissas 2, 3 and 5 only above 0.4 decades, so labels do not crowd."""
    if v <= 0 or decades >= 1:
        return ""
    e = math.floor(math.log10(v) + 1e-9)
    m = round(v / 10 ** e, 6)
    if m == 1 or (decades > 0.4 and m not in (2, 3, 5)):
        return ""
    return f"{m:g}×10" + str(e).translate(_SUPERSCRIPT)


def _log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(_pow10_label))

    def minor(v: float, _pos=None) -> str:  # the span is read when the figure is drawn
        lo, hi = ax.get_xlim()
        return _minor_label(v, math.log10(hi / lo) if lo > 0 and hi > lo else math.inf)

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def _error_axis(ax, lo: float, hi: float) -> None:
    """Log error axis with ticks as percentages, spanning [lo, hi]."""
    lo, hi = max(lo / 1.25, 1e-4), min(hi * 1.25, 1.0)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ticks = [t for t in ERROR_TICKS if lo <= t <= hi]
    if len(ticks) < 4:
        ticks = [t for t in ERROR_TICKS_DENSE if lo <= t <= hi] or [lo, hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(_pct))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _panel_grid(num_panels: int, panel_height_in: float):
    """A figure with one panel per compute measure, two per row."""
    ncols = 2 if num_panels > 1 else 1
    nrows = math.ceil(num_panels / ncols)
    return plt.subplots(nrows, ncols, figsize=(6.4 * ncols, panel_height_in * nrows), squeeze=False,
                        layout="constrained")


def _fit_label(prefix: str, fit: Fit) -> str:
    k = f"k={fit.k:.1f}" if not math.isnan(fit.k) else "k undefined"
    if not math.isnan(fit.k_ci_low):
        hi = "inf" if math.isinf(fit.k_ci_high) else f"{fit.k_ci_high:.1f}"
        k += f" [{fit.k_ci_low:.1f}, {hi}]"
    r2 = "pseudo-R²" if fit.model_form.startswith("quantile") else "R²"
    return f"{prefix}: {k}, {r2}={fit.r2:.2f}, n={fit.n}"


def _find(fits: list[Fit], group: tuple, measure: str, form: str) -> Fit | None:
    """The ok fit of ``form`` on ``measure`` for ``group`` (:attr:`Fit.group`), else None."""
    f = _find_any(fits, group, measure, form)
    return f if f is not None and f.ok else None


def _find_any(fits: list[Fit], group: tuple, measure: str, form: str) -> Fit | None:
    for f in fits:
        if f.group == group and (f.compute_measure, f.model_form) == (measure, form):
            return f
    return None


def _why(fits: list[Fit], group: tuple, measure: str) -> str:
    f = _find_any(fits, group, measure, "polynomial")
    return f.note if f is not None else "no data"


def _draw_fit(ax, f: Fit, color: str, label: str, ci_level: float, ls: str = "-"):
    """The polynomial line over the fitted range; its band only with >= 3 residual d.o.f."""
    xs = np.linspace(*f.x_range, 100)
    yhat, lo, hi = line_with_band(f, xs, ci_level)
    (ln,) = ax.plot(10 ** xs, 10 ** yhat, color=color, lw=1.8, ls=ls, label=_fit_label(label, f))
    if f.cov is not None and f.df_resid >= 3:
        ax.fill_between(10 ** xs, 10 ** lo, 10 ** hi, color=color, alpha=0.15, lw=0)
    return ln


def _final_points(ax, g, measure: str, color: str, label: str):
    """A group's final points (replicates merged), with their spread where there is one."""
    p = g.final.get(measure)
    if p is None or p.empty:
        return None
    yerr = p["error_std"].fillna(0).to_numpy(float)
    xerr = p["compute_flops_std"].fillna(0).to_numpy(float)
    if (yerr > 0).any() or (xerr > 0).any():
        ax.errorbar(p[measure], p["error"], yerr=yerr, xerr=xerr, fmt="none", ecolor="black",
                    elinewidth=0.8, capsize=2, zorder=4)
    style = dict(MEASURED_STYLE, facecolor=color)
    return ax.scatter(p[measure], p["error"], label=label, **style)


def _errors_of(groups, measure_set, frontier: bool = True) -> list[float]:
    """Every plotted error of the groups (for the shared error axis)."""
    out = []
    for g in groups:
        for table in (g.final, g.frontier) if frontier else (g.final,):
            for m in measure_set:
                if m in table and len(table[m]):
                    out += list(table[m]["error"].astype(float))
    return out


def benchmark_figure(bench: str, lit: pd.DataFrame, own: list, proxies: list, fits: list[Fit],
                     q: float, ci_level: float, formats: list[str], dpi: int) -> Figure | None:
    """One panel per compute measure that has data: literature coloured by year, the OLS
    polynomial with its confidence band, the quantile frontier, and measured runs on the
    benchmark's own dataset marked apart (one colour per eval set).

    ``own`` and ``proxies`` are :class:`analysis.points.MeasuredGroup` lists. Proxy groups are
    never drawn here: the legend names their own figures instead.
    """
    spec = BENCHMARK_SPECS[bench]
    has = {m: (not lit.empty and lit[m].notna().any())
           or any(len(g.final.get(m, [])) for g in own) for m in COMPUTE_MEASURES}
    measures = [m for m in COMPUTE_MEASURES if has[m]]
    if not measures:
        return None
    fig, axes = _panel_grid(len(measures), 5.4)
    years = lit["year"].dropna() if not lit.empty else pd.Series(dtype=float)
    vmin, vmax = (years.min(), years.max()) if len(years) else (2012, 2022)
    sc = None
    errs = list(lit["error"].dropna()) if not lit.empty else []
    errs += _errors_of(own, COMPUTE_MEASURES, frontier=False)
    lit_group = (bench, BENCHMARK_DATASET.get(bench, bench), "published", "literature", "published")
    for ax, measure in zip(axes.flat, measures):
        handles = []
        L = lit.dropna(subset=[measure]) if not lit.empty else lit
        if len(L):
            sc = ax.scatter(L[measure], L["error"], c=L["year"], cmap="viridis", vmin=vmin,
                            vmax=vmax, s=22, alpha=0.85, edgecolor="none")
            # a neutral proxy: the colour of any one point means nothing in the legend
            handles.append(Line2D([], [], ls="none", marker="o", ms=5, color="gray",
                                  label=f"Published models, coloured by year (n={len(L)})"))
            f = _find(fits, lit_group, measure, "polynomial")
            if f is None:
                handles.append(Line2D([], [], ls="none", label=f"No literature fit: "
                                      f"{_why(fits, lit_group, measure)}"))
            else:
                handles.append(_draw_fit(ax, f, "black", "OLS, literature", ci_level))
                fq = _find(fits, lit_group, measure, quantile_form(q))
                if fq is not None:
                    xs = np.linspace(*f.x_range, 100)
                    (lq,) = ax.plot(10 ** xs, 10 ** (fq.a + fq.b * xs), color="black", lw=1.3,
                                    ls="--", label=_fit_label(f"Frontier (q={q:g})", fq))
                    handles.append(lq)
        for i, g in enumerate(own):
            color = GROUP_COLORS[i % len(GROUP_COLORS)]
            pts = g.final.get(measure)
            if pts is None or pts.empty:
                handles.append(Line2D([], [], ls="none", label=f"Measured {g.dataset} "
                                      f"({g.eval_set}): none report {COMPUTE_SHORT[measure]}"))
                continue
            gkey = (*g.key, "measured", "final")
            f = _find(fits, gkey, measure, "polynomial")
            if f is None:
                handles.append(Line2D([], [], ls="none", label=f"No measured fit ({g.eval_set}): "
                                      f"{_why(fits, gkey, measure)}"))
            else:
                handles.append(_draw_fit(ax, f, color, f"OLS, measured {g.eval_set}", ci_level))
            handles.append(_final_points(
                ax, g, measure, color, f"This project, measured on {g.dataset}, eval {g.eval_set} "
                f"(n={len(pts)} configurations, {int(pts['num_runs'].sum())} runs)"))
        if proxies:
            names = ", ".join(sorted({p.dataset for p in proxies}))
            handles.append(Line2D([], [], ls="none", label=f"Proxy-dataset runs ({names}) are not "
                                  "comparable: drawn in their own figures"))
        _log_x(ax)
        ax.set_xlabel(COMPUTE_LABELS[measure])
        ax.set_ylabel(f"{spec.metric_label} (log scale)")
        ax.set_title(COMPUTE_SHORT[measure].capitalize())
        if len(errs):
            _error_axis(ax, float(min(errs)), float(max(errs)))
        ax.grid(True, which="major", ls=":", lw=0.6, alpha=0.7)
        if handles:  # below the axes, so it can never hide a point
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      frameon=False)
    for ax in list(axes.flat)[len(measures):]:
        ax.set_visible(False)
    what = f"{spec.title} data only: Thompson et al. 2022" + (", measured runs" if own else "")
    fig.suptitle(f"{spec.title}: error vs compute ({what})", fontsize=12)
    if sc is not None:
        cb = fig.colorbar(sc, ax=[a for a in axes.flat if a.get_visible()], shrink=0.8, pad=0.02)
        cb.set_label("Publication year")
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f}"))
    return _render(fig, bench, f"{spec.title}: error vs compute", formats, dpi)


def _measured_error_label(g, spec) -> str:
    """The error the measured runs report (their result.json ``metric_name``), which need not be the
    literature's: the QA workload's error is 1 - F1 while the SQuAD literature fits 1 - exact match."""
    names = sorted(set(g.runs["metric_name"].dropna())) if "metric_name" in g.runs else []
    if len(names) != 1:
        return spec.metric_label
    return f"Error (1 - {names[0].replace('_', ' ')})"


def measured_group_figure(g, fits: list[Fit], ci_level: float, formats: list[str],
                          dpi: int) -> Figure | None:
    """One measured group (:class:`analysis.points.MeasuredGroup`) on its own axes: final points
    with their replicate spread and OLS fit, the compute-efficient frontier from curve.csv and
    its fit. A proxy group says so in its title: its axes are not the literature's."""
    spec = BENCHMARK_SPECS[g.benchmark]
    measures = [m for m in COMPUTE_MEASURES
                if len(g.final.get(m, [])) or len(g.frontier.get(m, []))]
    if not measures:
        return None
    fig, axes = _panel_grid(len(measures), 5.0)
    errs = _errors_of([g], measures)
    final_key, front_key = (*g.key, "measured", "final"), (*g.key, "measured", "frontier")
    for ax, measure in zip(axes.flat, measures):
        handles = []
        pts = g.final.get(measure)
        if pts is not None and len(pts):
            f = _find(fits, final_key, measure, "polynomial")
            if f is not None:
                handles.append(_draw_fit(ax, f, "#d95f02", "OLS, final points", ci_level))
            else:
                handles.append(Line2D([], [], ls="none", label=f"No fit on final points: "
                                      f"{_why(fits, final_key, measure)}"))
            handles.append(_final_points(
                ax, g, measure, "#ff7f0e", f"Final points (n={len(pts)} configurations, "
                f"{int(pts['num_runs'].sum())} runs; bars: replicate s.d.)"))
        fr = g.frontier.get(measure)
        if fr is not None and len(fr):
            (st,) = ax.plot(fr[measure], fr["error"], drawstyle="steps-post", color="#1b9e77",
                            marker="o", ms=3.5, lw=1.0,
                            label=f"Compute-efficient frontier over curve.csv (n={len(fr)})")
            handles.append(st)
            f = _find(fits, front_key, measure, "polynomial")
            if f is not None:
                handles.append(_draw_fit(ax, f, "#1b9e77", "OLS, frontier", ci_level, ls="--"))
        _log_x(ax)
        ax.set_xlabel(COMPUTE_LABELS[measure])
        ax.set_ylabel(f"{_measured_error_label(g, spec)} on {g.dataset} (log scale)")
        ax.set_title(COMPUTE_SHORT[measure].capitalize())
        if errs:
            _error_axis(ax, float(min(errs)), float(max(errs)))
        ax.grid(True, which="major", ls=":", lw=0.6, alpha=0.7)
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    for ax in list(axes.flat)[len(measures):]:
        ax.set_visible(False)
    if g.proxy:
        title = (f"PROXY: {g.dataset}, standing in for {spec.title} (eval {g.eval_set}). Measured "
                 f"runs only; not comparable with the {spec.title} literature\n{g.hardware}")
    else:
        title = f"{spec.title} ({g.dataset}, eval {g.eval_set}): measured runs\n{g.hardware}"
    fig.suptitle(title, fontsize=11)
    return _render(fig, g.name, title, formats, dpi)


def within_family_figure(table: pd.DataFrame, fits: list[Fit], formats: list[str], dpi: int) -> Figure | None:
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(10.5, 5.4), layout="constrained")
    colors = plt.get_cmap("tab10")
    for i, (family, d) in enumerate(table.groupby("family", sort=False)):
        color = colors(i % 10)
        f = next((x for x in fits if x.benchmark == family and x.model_form == "polynomial"), None)
        label = family if f is None or not f.ok else _fit_label(family, f)
        ax.scatter(d["fwd_flops"], d["top1_error"], color=color, s=30, zorder=3, label=label)
        if f is not None and f.ok:
            xs = np.linspace(*f.x_range, 50)
            ax.plot(10 ** xs, 10 ** (f.a + f.b * xs), color=color, lw=1.5)
    _log_x(ax)
    ax.set_xlabel("Forward-pass compute (FLOPs per image = 2 × fvcore MACs, at eval resolution)")
    ax.set_ylabel("Top-1 error on ImageNet (log scale)")
    _error_axis(ax, float(table["top1_error"].min()), float(table["top1_error"].max()))
    ax.grid(True, which="major", ls=":", lw=0.6, alpha=0.7)
    ax.set_title("Within-family scaling, torchvision architectures (acc@1 from weight metadata)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              title="Family: k [95% CI], R², n")
    return _render(fig, "within_family", "Within-family scaling (torchvision)", formats, dpi)


def k_summary_figure(fits: list[Fit], formats: list[str], dpi: int) -> Figure | None:
    """k with its bootstrap interval for every polynomial fit that has one, on the benchmarks'
    own data only: a proxy dataset's k is not comparable with the literature's, so proxy fits
    are left out (they are in fits.csv with proxy=true and in their own figures)."""
    cands = [f for f in fits if f.model_form == "polynomial" and f.ok and not math.isnan(f.k)
             and f.benchmark in BENCHMARK_SPECS and f.source in ("literature", "measured")]
    rows = [f for f in cands if not f.proxy]
    num_proxy = len(cands) - len(rows)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(12.0, 0.32 * len(rows) + 2.0), layout="constrained")
    finite = [v for f in rows for v in (f.k, f.k_ci_high) if np.isfinite(v)]
    xmax = max(finite) * 1.6
    labels = []
    for i, f in enumerate(rows):
        color = "black" if f.source == "literature" else "#d95f02"
        if not math.isnan(f.k_ci_low):
            unbounded = math.isinf(f.k_ci_high)
            ax.plot([f.k_ci_low, xmax if unbounded else f.k_ci_high], [i, i], color=color, lw=1.5)
            if unbounded:
                ax.plot(xmax, i, ">", color=color, ms=5)
        ax.plot(f.k, i, "o" if f.source == "literature" else "D", color=color, ms=5)
        who = ("literature" if f.source == "literature"
               else f"measured ({f.eval_set}, {f.points}, {f.hardware})")
        labels.append(f"{BENCHMARK_SPECS[f.benchmark].title} · {COMPUTE_SHORT[f.compute_measure]} "
                      f"· {who} (n={f.n})")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1, 2, 4, 5, 10, 20, 50, 100, 200, 500, 1000]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(THEORY_K_MIN, color="gray", ls="--", lw=1)
    proxy_note = (f"\n{num_proxy} fit(s) on proxy datasets not shown\n(not comparable; see "
                  "fits.csv, proxy=true)" if num_proxy else "")
    ax.set_xlabel("k, where compute grows as error^-k (log scale)\n"
                  "bars: bootstrap 95% interval (none under 3 residual d.o.f.;\n"
                  "a frontier's resamples runs); arrow: unbounded above\ndashed: k = 4, theory's minimum "
                  "for over-parameterised models" + proxy_note)
    ax.grid(True, axis="x", ls=":", lw=0.6)
    ax.set_title("Scaling exponent k, polynomial fits on each benchmark's own data")
    return _render(fig, "k_summary", "Scaling exponent k per benchmark and compute measure",
                   formats, dpi)


def epoch_figure(epoch: pd.DataFrame, lit_points: pd.DataFrame, runs: pd.DataFrame,
                 formats: list[str], dpi: int) -> Figure | None:
    """Training compute over time (Epoch AI), with the paper's points and this project's runs on
    the benchmarks' own datasets (proxy-dataset runs are counted in the legend, not drawn)."""
    if epoch is None or epoch.empty:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 5.0), layout="constrained")
    top = epoch["domain"].value_counts().index[:5]
    colors = plt.get_cmap("tab10")
    for i, dom in enumerate(top):
        d = epoch[epoch["domain"] == dom]
        ax.scatter(d["date"], d["train_flops"], s=9, alpha=0.45, color=colors(i),
                   label=f"Epoch AI: {dom} (n={len(d)})")
    rest = epoch[~epoch["domain"].isin(top)]
    if len(rest):
        ax.scatter(rest["date"], rest["train_flops"], s=9, alpha=0.35, color="lightgray",
                   label=f"Epoch AI: other (n={len(rest)})")
    lp = lit_points.dropna(subset=["network_operations", "year"])
    if len(lp):
        dates = pd.to_datetime(lp["year"].astype(int).astype(str) + "-07-01")
        ax.scatter(dates, lp["network_operations"], marker="s", s=16, facecolor="none",
                   edgecolor="black", lw=0.7, label=f"Thompson et al. network operations (n={len(lp)})")
    if not runs.empty:
        r = runs.dropna(subset=["network_operations"])
        r = r[r["started_at"].notna()]
        # Runs on a proxy dataset are not the benchmark's training job: not drawn as if they were.
        own = r[~r["proxy"].astype(bool)]
        if len(own):
            ax.scatter(pd.to_datetime(own["started_at"], utc=True, errors="coerce").dt.tz_localize(None),
                       own["network_operations"], label=f"This project, measured on benchmark "
                       f"datasets (n={len(own)})", **MEASURED_STYLE)
        if len(r) > len(own):
            ax.plot([], [], ls="none", label=f"{len(r) - len(own)} run(s) on proxy datasets not "
                    "shown (not comparable)")
    ax.set_yscale("log")
    ax.set_xlabel("Publication date (runs: start date)")
    ax.set_ylabel("Training compute (FLOPs, log scale)")
    ax.set_title("Context: training compute of notable ML systems over time")
    ax.grid(True, ls=":", lw=0.6, alpha=0.7)
    ax.legend(loc="upper left", framealpha=0.85, markerscale=1.5)
    return _render(fig, "epoch_context", "Training compute over time (Epoch AI context)",
                   formats, dpi)
