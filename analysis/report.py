"""report.html (one self-contained page, images inlined as base64) and the terminal summary."""
from __future__ import annotations

import base64
import html
import math
from typing import Any, Iterable, Optional

import pandas as pd

from analysis.constants import (
    BENCHMARK_SPECS, COMPUTE_SHORT, FLOP_PER_LB_CO2_SPECTRUM, FLOP_PER_USD_SPECTRUM,
    PUBLISHED_POLYNOMIAL,
)
from analysis.extrapolate import kind_words
from analysis.figures import Figure
from analysis.fits import Fit
from analysis.points import contended_mask
from analysis.study import SCOPE_STATEMENT


def fmt(v: Any, digits: int = 4) -> str:
    """Compact number: dash for missing, scientific for very large or small magnitudes."""
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, (bool,)):
        return str(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _table(df: pd.DataFrame, columns: Optional[list[str]] = None) -> str:
    if df is None or df.empty:
        return "<p class='muted'>No rows.</p>"
    cols = columns or list(df.columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(fmt(r[c]))}</td>" for c in cols) + "</tr>"
                     for _, r in df.iterrows())
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _img(fig: Figure) -> str:
    b64 = base64.b64encode(fig.data["png"]).decode("ascii")
    return (f"<figure><img alt='{html.escape(fig.title)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{html.escape(fig.title)} (figures/{fig.name}.png, .svg)</figcaption></figure>")


def reproduction_table(fits: list[Fit]) -> pd.DataFrame:
    """The paper's published OLS numbers next to ours."""
    rows = []
    for (bench, measure), pub in PUBLISHED_POLYNOMIAL.items():
        ours = next((f for f in fits if (f.benchmark, f.source, f.compute_measure, f.model_form)
                     == (bench, "literature", measure, "polynomial")), None)
        rows.append({
            "benchmark": bench, "compute_measure": measure,
            "published_b": pub["b"], "ours_b": ours.b if ours else math.nan,
            "published_b_se": pub["b_se"], "ours_b_se": ours.b_se if ours else math.nan,
            "published_r2": pub["r2"], "ours_r2": ours.r2 if ours else math.nan,
            "published_n": pub["n"], "ours_n": ours.n if ours else math.nan,
        })
    return pd.DataFrame(rows)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 6px;
text-align:right;white-space:nowrap}th{background:#f4f4f4;position:sticky;top:0}
td:first-child,th:first-child{text-align:left}.scroll{max-height:520px;overflow:auto;border:1px solid #eee}
figure{margin:1.2em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
.muted{color:#777}code{background:#f4f4f4;padding:0 3px}li{margin:.2em 0}
.pair{display:flex;gap:1em;align-items:flex-start}.pair figure{flex:1;min-width:0}
"""


def _energy_table(energy: list[Any]) -> pd.DataFrame:
    rows = [{"scope": "all runs" if e.group is None else " / ".join(e.group),
             "compute measure": e.measure, "device": e.device, "energy methods": e.methods,
             "kind": kind_words(e.kind), "j_per_flop": e.j_per_flop, "runs": e.n_runs,
             "divides": f"energy_total_j / {e.divides_by}"} for e in energy]
    return pd.DataFrame(rows)


def _groups_table(groups: list[Any]) -> pd.DataFrame:
    rows = []
    for g in groups:
        runs = g.runs
        rows.append({"benchmark": g.benchmark, "dataset": g.dataset, "eval_set": g.eval_set,
                     "hardware": g.hardware, "proxy": "PROXY" if g.proxy else "no",
                     "runs": len(runs),
                     "configurations": runs["config_id"].nunique(),
                     "contended": int(contended_mask(runs["contended"]).sum()),
                     "no contention record": int(runs["contended"].isna().sum()),
                     "lowest error": g.min_error})
    return pd.DataFrame(rows)


def contention_sentence(measured: Any, include_contended: bool) -> str:
    """What happened to contended runs, and how many runs had no record (report and summary)."""
    if include_contended:
        s = (f"{measured.num_contended} contended run(s) included in the time- and energy-based "
             "fits (fit.include_contended=true).")
    else:
        s = (f"{measured.num_contended_excluded} contended run(s) left out of the time- and "
             "energy-based fits (hardware_burden, hardware_burden_consolidated, J/FLOP; "
             "fit.include_contended=false); their FLOP counts and errors are still fitted.")
    if measured.num_contention_unknown:
        s += (f" {measured.num_contention_unknown} run(s) have no contention record (result.json "
              "predates the field): treated as not contended.")
    return s


def frontier_sentence(measured: Any) -> str:
    c = measured.curve_counts
    parts = []
    if c.get("no_curve"):
        parts.append(f"{c['no_curve']} run(s) without curve.csv skipped")
    if c.get("bad_curve"):
        parts.append(f"{c['bad_curve']} bad curve.csv file(s) skipped (strict=false; the runs keep "
                     "their final point)")
    if c.get("no_burden_column"):
        parts.append(f"{c['no_burden_column']} curve.csv file(s) without hardware_burden_flops "
                     "(older runs) give no hardware-burden frontier")
    if c.get("no_window_column"):
        parts.append(f"{c['no_window_column']} curve.csv file(s) do not say their window (older "
                     "runs: their FLOPs may include warm-up)")
    return "Frontier: " + ("; ".join(parts) if parts else "every fitted run has a full curve.csv") + "."


def build_html(*, fits: list[Fit], fits_df: pd.DataFrame, extrap: pd.DataFrame,
               within: pd.DataFrame, within_fits: list[Fit], figures: list[Figure],
               sources: list[Any], runs: pd.DataFrame, n_fitted_runs: int,
               energy: list[Any], notes: list[str], settings: dict[str, Any],
               points: Optional[pd.DataFrame] = None, groups: Optional[list[Any]] = None,
               measured: Any = None, scan: Any = None,
               comparison: Optional[pd.DataFrame] = None, budgets: Optional[pd.DataFrame] = None,
               allocation: Optional[pd.DataFrame] = None,
               hardware: Optional[pd.DataFrame] = None) -> str:
    groups = groups or []
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>computelimits: scaling analysis</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Compute, error and cost: Thompson et al. reproduced, with measured runs</h1>",
             "<p>Generated by <code>python -m analysis</code>. Data: Thompson, Greenewald, Lee and "
             "Manso, <i>The Computational Limits of Deep Learning</i> (arXiv 2007.05558, v2 2022), "
             "their published CSVs; this project's <code>result.json</code> runs.</p>"]

    parts.append("<h2>Reproduction check</h2><p>The paper's published OLS results (notebooks at "
                 "commit 62f1e4d2) next to this code's, for <code>log10(error) = a + b "
                 "log10(compute)</code>.</p>")
    parts.append(_table(reproduction_table(fits)))

    shown: set[str] = set()
    if comparison is not None:
        parts += measured_vs_literature_html(comparison, budgets, allocation, hardware, groups,
                                             figures, settings, shown)
    figures = [f for f in figures if f.name not in shown]

    parts.append("<h2>Figures</h2><p>Measured runs are fitted per (benchmark, dataset, eval set, "
                 "hardware). "
                 "Only runs on a benchmark's own dataset share the literature's axes; a proxy "
                 "dataset (e.g. Fashion-MNIST standing in for ImageNet) has its own figure, "
                 "titled PROXY, and is left out of the k summary and the Epoch context figure: "
                 "its error and compute are not comparable with the published models'.</p>")
    parts += [_img(f) for f in figures]

    parts.append("<h2>Fits</h2><p>One row per (benchmark, dataset, eval set, source, points, "
                 "compute measure, model form). k = 1/|b| for the power-law forms (compute grows "
                 "as error<sup>-k</sup>); its interval is a "
                 f"{settings['ci_level']:.0%} pairs bootstrap ({settings['resamples']} "
                 "resamples) mapped through k = -1/b; ∞ means the interval for b reaches 0. Frontier "
                 "points share runs, so a frontier's interval resamples runs instead and rebuilds "
                 "the frontier each time (polynomial form only, 3 runs or more); frontier fits "
                 "have no band. No interval and no band where a fit has under 3 residual degrees "
                 "of freedom. <code>n</code> counts distinct points: "
                 "replicates of one configuration are one point (<code>num_runs</code> counts "
                 "the runs). <code>points</code>: <code>published</code>, <code>final</code> (a "
                 "run's last evaluation, replicates merged) or <code>frontier</code> (the "
                 "compute-efficient frontier over every evaluation in curve.csv, Kaplan et al. "
                 "2020, Hoffmann et al. 2022).</p>")
    parts.append(_table(fits_df))

    parts.append("<h2>Extrapolations</h2><p>Compute at which each fit reaches the target error "
                 "(<code>best_observed</code> is the lowest error in that fit's data). CO2 and "
                 "dollars, first with the constants of the paper's popular version (IEEE Spectrum, "
                 f"<i>Deep Learning's Diminishing Returns</i>, 2021): {FLOP_PER_LB_CO2_SPECTRUM:.4e} "
                 f"FLOP per lb CO2 and {FLOP_PER_USD_SPECTRUM:.4e} FLOP per USD; then with the "
                 "joules per FLOP of this project's runs, "
                 f"{settings['carbon_intensity_g_per_kwh']:g} gCO2/kWh and "
                 f"{settings['price_usd_per_kwh']:g} USD/kWh (configurable), one row per device "
                 "and energy method (<code>j_per_flop_basis</code>; <code>j_per_flop_kind</code> "
                 "says whether the energy was measured or estimated). A proxy dataset's fit is "
                 "extrapolated only to its own lowest error, never to the benchmark's targets. "
                 "Only training-compute measures are converted.</p>")
    parts.append(_table(extrap))

    parts.append("<h2>Within-family scaling (torchvision)</h2><p>Forward FLOPs counted with "
                 "fvcore on the architectures at the weights' evaluation resolution. fvcore counts "
                 "a multiply-add as one flop, so <code>fwd_flops</code> = 2 × "
                 "<code>fvcore_macs</code>. torchvision's <code>_ops</code> metadata is also in "
                 "multiply-adds (GMACs, labelled GFLOPS in its docs). Non-zero "
                 "<code>unsupported_ops</code> are ops fvcore skips (element-wise adds, "
                 "activations; for attention models a real undercount).</p>")
    if within_fits:
        wf = pd.DataFrame([{"family": f.benchmark, "n": f.n, "b": f.b, "b_se": f.b_se, "r2": f.r2,
                            "k": f.k, "k_ci_low": f.k_ci_low, "k_ci_high": f.k_ci_high,
                            "note": f.note} for f in within_fits if f.model_form == "polynomial"])
        parts.append(_table(wf))
    parts.append(_table(within))

    parts.append("<h2>Data</h2>")
    src = pd.DataFrame([{"file": s.label, "path": str(s.path), "origin": s.origin,
                         "sha256": s.sha256[:16] + "…",
                         "matches pinned sha256": "yes" if s.matches_pin else "NO"} for s in sources])
    parts.append(_table(src))
    if runs.empty:
        parts.append("<p>No measured runs found (results.root: "
                     f"{html.escape(str(settings['results_root']))}).</p>")
    else:
        status = runs.groupby(["benchmark", "status"], dropna=False).size().reset_index(name="runs")
        parts.append(f"<p>Measured runs under <code>{html.escape(str(settings['results_root']))}</code>: "
                     f"{html.escape(runs_sentence(runs, groups, scan))}. Each fit's "
                     "<code>num_runs</code> and <code>runs_left_out</code> (in the fits table) "
                     "say how many runs entered it and why the others did not.</p>")
        parts.append(_table(status))
    if groups:
        parts.append("<h3>Measured groups</h3><p>Each row is fitted on its own: runs on other "
                     "hardware (device, CPU threads, precision), another dataset or another eval "
                     "set are other groups.</p>")
        parts.append(_table(_groups_table(groups)))
        if measured is not None:
            contention = contention_sentence(measured, settings.get("include_contended", False))
            parts.append(f"<p>{html.escape(contention)} "
                         f"{html.escape(frontier_sentence(measured))}</p>")
        if points is not None and not points.empty:
            parts.append("<h3>Measured points</h3><p>Every point behind every measured fit "
                         "(also <code>measured_points.csv</code>): replicates merged to their "
                         "mean, with their standard deviation (ddof=1) and run count.</p>")
            parts.append(_table(points))

    parts.append("<h3>Energy per FLOP of this project's runs</h3>")
    if energy:
        parts.append("<p>Median over runs, per device and energy method; never pooled across "
                     "devices. <b>Estimated</b> energy (codecarbon's TDP model for the CPU and a "
                     "per-DIMM constant for RAM, used when no hardware counter can be read) is an "
                     "assumption, not a measurement. Joules per FLOP from a CPU run, estimated or "
                     "measured, do not transfer to accelerator-era compute: the literature's "
                     "models trained on GPUs and TPUs, whose energy per FLOP differs by orders of "
                     "magnitude (and a GPU run's figure holds for its own device and precision "
                     "only). The run-based CO2 and dollar columns for literature fits are a "
                     "what-if on this project's hardware, not an estimate of what those models "
                     "cost.</p>")
        parts.append(_table(_energy_table(energy)))
    else:
        parts.append("<p class='muted'>No run has both energy and FLOPs.</p>")

    parts.append("<h2>Conventions and notes</h2><ul>")
    conventions = [
        "Error follows the paper: ImageNet 1 − top-1, COCO 1 − box AP, SQuAD 1.1 1 − exact match, "
        "CoNLL-2003 1 − F1, WMT 1 − BLEU/100.",
        "forward_pass = flops, or 2 × multiadds when only that is given (1 multiply-add = 2 FLOPs); "
        "network_operations and hardware_burden are the CSV columns as given.",
        "hardware_burden_consolidated = hardware burden where reported, else predicted from network "
        "operations by a log10–log10 OLS fitted on the rows reporting both (measured runs: within "
        "their own dataset and eval set only).",
        "Measured runs: forward_pass = fwd_flops_per_sample, network_operations = train_flops "
        "(3 × forward × samples), hardware_burden = hardware_burden_flops; only status ok fitted.",
        "Replicates: runs whose config differs only in seed, run name, device, data.root, "
        "data.download, trainer.progress or measure.* are one configuration (without a config: "
        "the overrides minus those keys).",
        "Quantile fits: statsmodels QuantReg defaults; R² there is the Koenker–Machado pseudo R².",
    ]
    parts += [f"<li>{html.escape(c)}</li>" for c in conventions + notes]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def _count_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def runs_sentence(runs: pd.DataFrame, groups: list[Any], scan: Any = None) -> str:
    """How many runs were found, fitted and left out, and why (terminal and report).

    A run counts as fitted when it entered at least one final-point fit: status ok, an error,
    and at least one compute measure (after contended runs leave the time-based ones).
    """
    num_files = scan.num_files if scan is not None else len(runs)
    ok = runs[(runs["status"] == "ok") & runs["error"].notna()] if not runs.empty else runs
    entered = 0
    for g in groups:
        entered += int(g.runs[list(COMPUTE_SHORT)].notna().any(axis=1).sum())
    text = (f"{num_files} result.json file(s) read, {len(runs)} run(s): {len(ok)} with status ok "
            f"and an error, {entered} of them entered at least one fit")
    no_compute = len(ok) - entered
    if no_compute:
        text += (f" ({no_compute} without any compute: no fwd_flops_per_sample, train_flops or "
                 "hardware_burden_flops)")
    if not runs.empty:
        other = runs[~runs.index.isin(ok.index)]
        labels = other["status"].where(other["status"] != "ok", "ok without an error")
        counts = labels.value_counts().sort_index()
        if len(counts):
            text += "; not fitted: " + _count_text(dict(counts.items()))
    if scan is not None:
        left: dict[str, int] = {}
        if scan.skipped or scan.bad_curves:
            left["bad file(s) skipped (strict=false)"] = len(scan.skipped) + len(scan.bad_curves)
        if scan.duplicates:
            left["copied file(s) of runs already counted (same run_id)"] = scan.num_copies
        if scan.not_read:
            left["path(s) not read (reached twice through symlinks, or broken links)"] = len(scan.not_read)
        if left:
            text += "; left out: " + _count_text(left) + " (each named in the warnings and notes)"
    return text


def measured_lines(num_found: int, measured: Any, groups: list[Any], include_contended: bool,
                   runs: Optional[pd.DataFrame] = None, scan: Any = None) -> list[str]:
    """Terminal lines on the measured runs: what was found and left out, the groups, every fit's
    runs (how many entered, why the others did not), contention and the frontier."""
    if runs is not None:
        lines = ["measured runs: " + runs_sentence(runs, groups, scan)]
    else:
        lines = [f"measured runs: {num_found} found, {measured.num_runs} with status ok and an "
                 "error"]
    lines.append(f"  {measured.num_runs} run(s) as {measured.num_configs} distinct "
                 f"configuration(s) in {len(groups)} group(s) of (benchmark, dataset, eval set, "
                 "hardware), "
                 "each fitted on its own")
    for g in groups:
        tag = " PROXY (own figure, never with the literature)" if g.proxy else ""
        lines.append(f"  {g.benchmark} / {g.dataset} / eval {g.eval_set} / {g.hardware}: "
                     f"{len(g.runs)} run(s), "
                     f"{g.runs['config_id'].nunique()} configuration(s){tag}")
    if measured.num_runs:
        lines.append(contention_sentence(measured, include_contended))
        lines.append(frontier_sentence(measured))
    if any(g.entered for g in groups):
        lines.append("runs per measured fit (how many entered; the others, and why):")
    for g in groups:
        for points, measure in g.entered:
            lines.append(f"  {g.benchmark} / {g.dataset} / eval {g.eval_set} / {g.hardware}, {points}, "
                         f"{COMPUTE_SHORT.get(measure, measure)}: {g.accounting(points, measure)}")
    return lines


def summary_lines(fits: Iterable[Fit], within_fits: Iterable[Fit]) -> list[str]:
    """Short terminal table: the polynomial fits (error ~ compute^b, k = 1/|b|).

    A proxy dataset is marked with ``*``.
    """
    head = (f"{'benchmark':<14}{'dataset':<16}{'eval set':<15}{'source':<11}{'points':<10}"
            f"{'compute':<31}{'n':>4}{'b':>9}{'s.e.':>8}{'R2':>7}  k [95% CI]")
    lines = [head, "-" * len(head)]
    any_proxy = False
    for f in fits:
        if f.model_form != "polynomial":
            continue
        measure = COMPUTE_SHORT.get(f.compute_measure, f.compute_measure)
        ds = f.dataset + ("*" if f.proxy else "")
        any_proxy |= f.proxy
        lead = f"{f.benchmark:<14}{ds:<16}{f.eval_set:<15}{f.source:<11}{f.points:<10}{measure:<31}{f.n:>4}"
        on = f"  [{f.hardware}]" if f.hardware else ""  # measured runs: which machine
        if not f.ok:
            lines.append(f"{lead}  {f.note}{on}")
            continue
        k = _k(f)
        if "residual d.o.f." in f.note:
            k += " (no interval: < 3 residual d.o.f.)"
        elif f.points == "frontier" and math.isnan(f.k_ci_low):
            k += " (no interval: frontier points share runs)"
        elif f.points == "frontier":
            k += " (interval: bootstrap over runs)"
        lines.append(f"{lead}{f.b:>9.4f}{f.b_se:>8.4f}{f.r2:>7.3f}  {k}{on}")
    if any_proxy:
        lines.append("* proxy dataset: fitted on its own, not comparable with the benchmark's "
                     "literature")
    wf = [f for f in within_fits if f.model_form == "polynomial"]
    if wf:
        lines.append("")
        lines.append("within-family (torchvision, forward FLOPs vs top-1 error):")
        for f in wf:
            lines.append(f"  {f.benchmark:<13}n={f.n:<3} b={f.b:8.4f}  R2={f.r2:5.3f}  k={_k(f)}"
                         if f.ok else f"  {f.benchmark:<13}n={f.n:<3} {f.note}")
    return lines


def _k(f: Fit) -> str:
    if math.isnan(f.k):
        return "undefined"
    s = f"{f.k:.1f}"
    if not math.isnan(f.k_ci_low):
        hi = "inf" if math.isinf(f.k_ci_high) else f"{f.k_ci_high:.1f}"
        s += f" [{f.k_ci_low:.1f}, {hi}]"
    return s


def benchmark_title(name: str) -> str:
    spec = BENCHMARK_SPECS.get(name)
    return spec.title if spec else name


# --- the measured study (issue 15) -------------------------------------------------------------

def _interval(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return "–"
    return f"[{fmt(lo, 3)}, {fmt(hi, 3)}]"


def _yes_no(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "yes" if bool(v) else "no"


def comparison_display(comparison: pd.DataFrame, measure: str) -> pd.DataFrame:
    """The report's "Measured vs literature" table for one compute measure: a row per measured
    group with a frontier fit; a benchmark without one gets a single row whose note says why for
    each of its groups (e.g. one GPU default run: too few points). A proxy dataset says so in its
    own column. measured_vs_literature.csv keeps every row."""
    c = comparison[comparison["compute_measure"] == measure]
    keep = []
    for _, b in c.groupby("benchmark", sort=False):
        fitted = b[b["measured_k"].notna()]
        if len(fitted):
            keep.append(fitted)
            continue
        first = b.iloc[[0]].copy()
        if b["hardware"].notna().any():
            why = "; ".join(f"{r['dataset']} on {r['hardware']}: {r['measured_note']}"
                            for _, r in b.iterrows())
            first[["dataset", "hardware", "proxy"]] = None
            first["measured_n"] = math.nan
            first["measured_note"] = f"no measured frontier fit ({why})"
        keep.append(first)
    c = pd.concat(keep) if keep else c
    rows = []
    for _, r in c.iterrows():
        ds = r["dataset"] if isinstance(r["dataset"], str) else "–"
        if r["proxy"] is True or r["proxy"] == 1:
            ds = f"{ds} (PROXY)"
        rows.append({
            "benchmark": r["benchmark_title"], "measured on": ds,
            "hardware": r["hardware"] if isinstance(r["hardware"], str) else "–",
            "measured n (runs)": (f"{fmt(r['measured_n'])} ({fmt(r['measured_num_runs'])})"
                                  if not pd.isna(r["measured_n"]) else "–"),
            "measured k": fmt(r["measured_k"], 3),
            "measured interval": _interval(r["measured_k_ci_low"], r["measured_k_ci_high"]),
            "literature k (n)": (f"{fmt(r['literature_k'], 3)} ({fmt(r['literature_n'])})"),
            "literature interval": _interval(r["literature_k_ci_low"], r["literature_k_ci_high"]),
            "theory k ≥": fmt(r["theory_k_min"]),
            "intervals overlap": _yes_no(r["intervals_overlap"]),
            "measured vs k = 4": (r["measured_vs_theory"]
                                  if isinstance(r["measured_vs_theory"], str) else "–"),
            "note": r["measured_note"] if isinstance(r["measured_note"], str) else "",
        })
    return pd.DataFrame(rows)


def measured_vs_literature_html(comparison: pd.DataFrame, budgets: Optional[pd.DataFrame],
                                allocation: Optional[pd.DataFrame],
                                hardware: Optional[pd.DataFrame], groups: list[Any],
                                figures: list[Figure], settings: dict[str, Any],
                                shown: set[str]) -> list[str]:
    """The "Measured vs literature" section; adds the names of the figures it shows to
    ``shown`` (the Figures section leaves them out)."""
    parts = ["<h2>Measured vs literature</h2>",
             f"<p><b>What this can and cannot say.</b> {html.escape(SCOPE_STATEMENT)}</p>",
             "<p>Measured k: the compute-efficient frontier (the lowest error reached at each "
             "training compute, over every evaluation in the runs' curve.csv) fitted with the "
             "paper's polynomial form, log10(error) = a + b log10(compute), k = 1/|b|; its "
             f"{settings['ci_level']:.0%} interval resamples runs ({settings['resamples']} "
             "resamples) and rebuilds the frontier each time. Literature k: the same form over "
             "the published points of that benchmark, with a pairs bootstrap. Theory: k ≥ 4 for "
             "over-parameterised models (Thompson et al., sec. 2). <i>intervals overlap</i>: the "
             "two intervals share a value; <i>measured vs k = 4</i>: the measured interval lies "
             "above 4, below it, or includes it. Runs of different hardware are separate rows "
             "(a group with one run, such as a GPU default run, has too few points). Also in "
             "<code>measured_vs_literature.csv</code>, with hardware burden rows too.</p>",
             "<h3>Training compute (network operations, FLOPs)</h3>",
             _table(comparison_display(comparison, "network_operations")),
             "<h3>Hardware burden (devices × peak FLOP/s × time)</h3>",
             _table(comparison_display(comparison, "hardware_burden"))]

    parts.append("<h3>Compute-optimal allocation (Hoffmann et al. 2022)</h3><p>Final points "
                 "grouped into iso-FLOP budgets (training compute within a factor √2 of the "
                 "budget's smallest; the grids' anti-diagonals); in each budget with two or more "
                 "model sizes, the size that reached the lowest error is N<sub>opt</sub>. The "
                 "exponent a of N<sub>opt</sub> ∝ C<sup>a</sup> is an OLS over those budgets "
                 "(null under 3 budgets), for N = parameters (Hoffmann et al.'s N) and N = forward "
                 "FLOPs per sample. Hoffmann et al. found a ≈ 0.5 for language models; a grid of "
                 "four sizes only brackets the optimum, and a budget whose winner is the grid's "
                 "smallest or largest model is flagged <code>at_grid_edge</code>. Also in "
                 "<code>allocation_fits.csv</code> and <code>allocation_budgets.csv</code>.</p>")
    if allocation is not None and not allocation.empty:
        parts.append(_table(allocation))
    else:
        parts.append("<p class='muted'>No measured runs.</p>")
    if budgets is not None and not budgets.empty:
        parts.append(_table(budgets.drop(columns=["n_opt_run_ids"])))

    parts.append("<h3>This hardware: FLOP/s and joules per FLOP by workload</h3><p>Medians over "
                 "each group's runs that were not contended (also "
                 "<code>measured_hardware.csv</code>). FLOP/s = train_flops / train_time_s over "
                 "the same training steps; MFU against the run's <code>peak_flops_per_s</code> (the "
                 "FP32 peak, the paper's convention, whatever the run's precision). J/FLOP = "
                 "energy_total_j / train_flops; its kind says whether the energy was measured "
                 "(RAPL, NVML counters) or estimated (codecarbon's TDP model): an estimate is "
                 "never called a measurement.</p>")
    parts.append(_table(hardware) if hardware is not None else "<p class='muted'>No rows.</p>")

    by_name = {f.name: f for f in figures}
    pairs = []
    for g in groups:
        mine, lit = by_name.get(g.name), by_name.get(g.benchmark)
        if mine is None:
            continue
        pairs.append("<div class='pair'>" + _img(mine)
                     + (_img(lit) if lit is not None else
                        "<p class='muted'>No literature figure for this benchmark.</p>") + "</div>")
        shown.add(mine.name)
    if pairs:
        parts.append("<h3>Measured frontier beside the literature</h3><p>Left: each measured "
                     "group on its own axes (a PROXY dataset says so in its title); right: the "
                     "benchmark's published points and fits. The axes differ: compare slopes, "
                     "not levels.</p>")
        parts += pairs
    return parts


def study_lines(comparison: pd.DataFrame, allocation: pd.DataFrame) -> list[str]:
    """Terminal lines: measured frontier k beside the literature's, and the allocation exponent."""
    c = comparison[(comparison["compute_measure"] == "network_operations")
                   & comparison["hardware"].notna()]
    if c.empty:
        return []
    lines = ["measured vs literature (frontier polynomial k, network operations; theory k >= 4):"]
    for _, r in c.iterrows():
        tag = " PROXY" if r["proxy"] else ""
        measured = (f"{fmt(r['measured_k'], 3)} "
                    f"{_interval(r['measured_k_ci_low'], r['measured_k_ci_high'])} "
                    f"(n={fmt(r['measured_n'])})" if not pd.isna(r["measured_k"])
                    else f"none ({r['measured_note']})")
        lit = (f"{fmt(r['literature_k'], 3)} "
               f"{_interval(r['literature_k_ci_low'], r['literature_k_ci_high'])}"
               if not pd.isna(r["literature_k"]) else "none")
        lines.append(f"  {r['benchmark']} / {r['dataset']}{tag} / {r['hardware']}: measured k "
                     f"{measured}; literature {lit}; overlap {_yes_no(r['intervals_overlap'])}")
    a = allocation[allocation["size_measure"] == "num_params"] if not allocation.empty else allocation
    for _, r in a.iterrows():
        what = (f"a = {fmt(r['a'], 3)} over {r['num_budgets']} budgets" if not pd.isna(r["a"])
                else r["note"])
        lines.append(f"  allocation N_opt ~ C^a, {r['benchmark']} / {r['dataset']} / "
                     f"{r['hardware']}: {what}")
    return lines
