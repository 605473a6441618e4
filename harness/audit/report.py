"""``audit.csv``, the figures, ``report.html`` and the printed summary of an audit."""
from __future__ import annotations

import csv
import html
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from common.atomic import atomic_path, write_atomic
from harness.audit import verdicts as v
from harness.audit.audit import COLUMNS

FLAGGED = {"fwd_verdict": ("mac_convention", "mismatch"), "train_verdict": ("mac_convention", "forward_only", "mismatch"),
           "utilisation_verdict": ("impossible", "implausibly_low")}


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in COLUMNS and k not in extra]
    return [*COLUMNS, *extra]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)  # full precision: a file others compute from


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns_of(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(val) for k, val in row.items()})
    write_atomic(path, buf.getvalue())


def flagged(row: dict[str, Any]) -> list[str]:
    return [f"{col}={row[col]}" for col, bad in FLAGGED.items() if row.get(col) in bad]


def figures(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    pts = [(r["counted_fwd_flops"], r["claimed_fwd_flops"] * (2.0 if r.get("claimed_fwd_unit") == "MAC" else 1.0), r)
           for r in rows if r.get("counted_fwd_flops") and r.get("claimed_fwd_flops")]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 5))
        xs = [p[0] for p in pts]
        lo, hi = min(xs + [p[1] for p in pts]) / 2, max(xs + [p[1] for p in pts]) * 2
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="claimed = counted (1x)")
        ax.plot([lo, hi], [lo / 2, hi / 2], "k--", lw=1, label="0.5x (multiply-adds)")
        colours = {"match": "tab:green", "mac_convention": "tab:orange", "mismatch": "tab:red"}
        for verdict, colour in colours.items():
            sel = [p for p in pts if p[2]["fwd_verdict"] == verdict]
            if sel:
                ax.scatter([p[0] for p in sel], [p[1] for p in sel], c=colour, label=verdict, zorder=3)
        ax.set(xscale="log", yscale="log", xlabel="counted forward FLOPs per sample (fvcore, 2 x MACs)",
               ylabel="claimed forward FLOPs per sample", title="Forward-pass claims")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, fig_dir / "claimed_vs_counted.png"))
        plt.close(fig)
    util = [(r.get("year"), r["implied_utilisation"], r) for r in rows
            if r.get("implied_utilisation") and r.get("year")]
    if util:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colours = {"impossible": "tab:red", "implausibly_low": "tab:orange", "plausible": "tab:green"}
        for verdict, colour in colours.items():
            sel = [u for u in util if u[2]["utilisation_verdict"] == verdict]
            if sel:
                ax.scatter([u[0] for u in sel], [u[1] for u in sel], c=colour, s=14, label=f"{verdict} ({len(sel)})")
        ax.axhline(1.0, color="k", lw=1)
        ax.axhline(v.LOW_UTILISATION, color="k", lw=1, ls="--")
        ax.set(yscale="log", xlabel="year", ylabel="implied utilisation (compute / chips x peak x time)",
               title="Implied hardware utilisation of training claims")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, fig_dir / "utilisation_by_year.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def summary_lines(rows: list[dict[str, Any]], skipped: list[Any], limit: int = 40) -> list[str]:
    head = f"{'claim':40} {'params':>7} {'fwd ratio':>9} {'fwd verdict':14} {'train ratio':>11} {'train verdict':14} {'util':>8} {'util verdict':16}"
    lines = [head, "-" * len(head)]
    shown = rows if len(rows) <= limit else [r for r in rows if flagged(r)][:limit]
    for r in shown:
        lines.append(f"{str(r['claim_id'])[:40]:40} {_fmt(r.get('params_ratio'), 4):>7} {_fmt(r.get('fwd_flops_ratio'), 4):>9} {r['fwd_verdict']:14} "
                     f"{_fmt(r.get('train_flops_ratio'), 4):>11} {r['train_verdict']:14} {_fmt(r.get('implied_utilisation'), 4):>8} "
                     f"{r['utilisation_verdict']:16}")
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more rows in audit.csv (only flagged rows shown)")
    counts = {col: Counter(r[col] for r in rows) for col in FLAGGED}
    lines.append("")
    for col, c in counts.items():
        lines.append(f"{col}: " + ", ".join(f"{k} {n}" for k, n in sorted(c.items())))
    if skipped:
        lines.append(f"skipped {len(skipped)} row(s):")
        lines += [f"  {s.reason}" for s in skipped]
    return lines


def write_html(rows: list[dict[str, Any]], skipped: list[Any], figs: list[Path], out_dir: Path, title: str,
               measured: bool) -> Path:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:3px 6px}.bad{background:#fdd}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p>{len(rows)} claim(s) audited, {len(skipped)} skipped. Verdicts: ratio = claimed / counted; "
             f"<b>match</b> within {v.TOLERANCE:.0%}, <b>mac_convention</b> about {v.MAC_RATIO}, <b>forward_only</b> about "
             f"1/3 (training); utilisation <b>impossible</b> above 100%, <b>implausibly_low</b> below "
             f"{v.LOW_UTILISATION:.0%}.</p>"]
    for fig in figs:
        parts.append(f"<p><img src='figures/{esc(fig.name)}' style='max-width:48%'></p>")
    by_chip: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("implied_utilisation") is not None:
            by_chip.setdefault(str(r.get("hardware_matched")), []).append(r)
    if by_chip:
        parts.append("<h2>Implied utilisation by chip</h2><table><tr><th>chip (peak table entry)</th><th>claims</th>"
                     "<th>median utilisation</th><th>impossible</th><th>implausibly_low</th></tr>")
        for chip, sel in sorted(by_chip.items(), key=lambda kv: -len(kv[1])):
            utils = sorted(r["implied_utilisation"] for r in sel)
            median = utils[len(utils) // 2] if len(utils) % 2 else (utils[len(utils) // 2 - 1] + utils[len(utils) // 2]) / 2
            verdicts = Counter(r["utilisation_verdict"] for r in sel)
            parts.append(f"<tr><td>{esc(chip)}</td><td>{len(sel)}</td><td>{median:.1%}</td>"
                         f"<td>{verdicts['impossible']}</td><td>{verdicts['implausibly_low']}</td></tr>")
        parts.append("</table>")
    bad = [r for r in rows if flagged(r)]
    cols = ["claim_id", "model", "fwd_flops_ratio", "fwd_verdict", "train_flops_ratio", "train_verdict", "hardware",
            "implied_utilisation", "utilisation_verdict", "notes"]
    if measured:
        cols[-1:-1] = ["measured_status", "measured_flops_per_s", "measured_mfu", "measured_contended",
                       "projected_train_time_s", "projected_energy_j", "projected_co2_kg"]
    for heading, sel in (("Flagged claims", bad), ("All claims" if len(rows) <= 200 else "First 200 claims", rows[:200])):
        parts.append(f"<h2>{heading} ({len(sel)})</h2><table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>")
        for r in sel:
            cls = " class='bad'" if flagged(r) else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>")
        parts.append("</table>")
    if skipped:
        parts.append("<h2>Skipped rows</h2><ul>" + "".join(f"<li>{esc(s.reason)}</li>" for s in skipped) + "</ul>")
    parts.append("<p>Every column is in audit.csv.</p></body></html>")
    path = out_dir / "report.html"
    write_atomic(path, "\n".join(parts))
    return path
