"""Readable views of a hardware profile: a text table and a roofline plot (PNG).

The roofline (Williams, Waterman and Patterson, "Roofline", CACM 52(4), 2009) bounds a
kernel's FLOP/s by min(compute ceiling, bandwidth x arithmetic intensity). Here the measured
ceilings are the achieved GEMM FLOP/s per dtype and the measured copy bandwidth; the datasheet
peaks are drawn as dashed lines; every measured GEMM and convolution is a point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernels.peaks import DTYPES
from common.atomic import atomic_path

__all__ = ["format_table", "plot_roofline"]


def _g(value: float | None, scale: float = 1e9, fmt: str = "{:,.1f}") -> str:
    return "n/a" if value is None else fmt.format(value / scale)


def format_table(profile: dict[str, Any]) -> str:
    """The profile as a plain-text table (GFLOP/s, GB/s)."""
    lines = [
        f"device: {profile['device_name']} ({profile.get('device_type')})",
        f"torch {profile.get('versions', {}).get('torch')}, cuda {profile.get('versions', {}).get('cuda')}, "
        f"threads {profile.get('num_threads')}",
        "",
        f"{'dtype':6s} {'achieved GFLOP/s':>17s} {'best GEMM shape':>17s} {'spread':>7s} "
        f"{'datasheet GFLOP/s':>18s} {'of peak':>8s} {'conv2d GFLOP/s':>15s}",
    ]
    for dtype in DTYPES:
        achieved = profile["achieved_flops_per_s"].get(dtype)
        datasheet = profile["datasheet_flops_per_s"].get(dtype)
        if achieved is None and datasheet is None:
            continue
        at = (profile.get("achieved_at") or {}).get(dtype) or {}
        shape = at.get("shape")
        shape_s = f"{shape['m']}x{shape['n']}x{shape['k']}" if shape else "n/a"
        spread = at.get("spread_rel")
        frac = (profile.get("fraction_of_datasheet") or {}).get(dtype)
        lines.append(
            f"{dtype:6s} {_g(achieved):>17s} {shape_s:>17s} {('n/a' if spread is None else f'{spread:.1%}'):>7s} "
            f"{_g(datasheet):>18s} {('n/a' if frac is None else f'{frac:.0%}'):>8s} "
            f"{_g((profile.get('conv2d_flops_per_s') or {}).get(dtype)):>15s}"
        )
    bw = profile["bandwidth_bytes_per_s"]
    lines += [
        "",
        f"memory bandwidth (copy, read + write): {_g(bw.get('device_copy'))} GB/s",
        f"host-to-device (pinned):               {_g(bw.get('host_to_device'))} GB/s",
    ]
    if profile.get("datasheet_device"):
        lines.append(f"datasheet: {profile['datasheet_device']}")
    else:
        lines.append("datasheet: no entry for this device (peaks null)")
    if profile.get("device_type") == "cpu":
        for dtype in DTYPES:
            derived = (profile.get("derived_peak_flops_per_s") or {}).get(dtype)
            source = (profile.get("derived_peak_source") or {}).get(dtype)
            if derived:
                frac = (profile.get("fraction_of_derived_peak") or {}).get(dtype)
                of = f", measured {frac:.0%} of it" if frac is not None else ""
                lines.append(f"derived {dtype} peak: {_g(derived)} GFLOP/s{of}; {source}")
            elif dtype in ("fp32", "bf16") and source:
                lines.append(f"derived {dtype} peak: {source}")
    if "quiet" in profile:
        share = profile.get("host_other_cpu_share")
        share_s = "unknown" if share is None else f"{share:.0%}"
        state = "quiet" if profile.get("quiet") else f"NOT quiet ({profile.get('quiet_reason')})"
        lines.append(
            f"conditions: {state}; other processes used {share_s} of the host's CPU time; "
            f"measured at {profile.get('measured_at')}, attempt(s): {len(profile.get('quiet_attempts') or [])}"
        )
    checks = profile.get("flop_counter_check") or []
    if checks:
        ok = all(c.get("agrees") for c in checks)
        lines.append(
            f"FLOP counters (fvcore x2, FlopCounterMode) vs analytic: {'agree' if ok else 'DISAGREE'} "
            f"on {len(checks)} ops"
        )
    if profile.get("elapsed_s") is not None:
        lines.append(f"elapsed: {profile['elapsed_s']:.1f} s")
    return "\n".join(lines)


_COLORS = {"fp32": "tab:blue", "tf32": "tab:purple", "bf16": "tab:orange", "fp16": "tab:green"}


def plot_roofline(profile: dict[str, Any], path: str | Path) -> Path:
    """Draw the roofline PNG to ``path`` (atomically: temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    bandwidth = profile["bandwidth_bytes_per_s"].get("device_copy")
    points = [
        r
        for r in profile.get("measurements", [])
        if r.get("flops_per_s") and r.get("arithmetic_intensity_flops_per_byte")
    ]
    intensities = [r["arithmetic_intensity_flops_per_byte"] for r in points] or [1.0, 100.0]
    ceilings = [v for v in profile["achieved_flops_per_s"].values() if v]
    ridges = [c / bandwidth for c in ceilings] if bandwidth else []  # where the roofs bend
    x_lo = min(intensities + ridges) / 8
    x = np.logspace(np.log10(x_lo), np.log10(max(intensities + ridges) * 8), 200)

    fig, ax = plt.subplots(figsize=(10.5, 5.5), dpi=110)
    for dtype in DTYPES:
        color = _COLORS[dtype]
        achieved = profile["achieved_flops_per_s"].get(dtype)
        if achieved:
            roof = np.minimum(achieved, bandwidth * x) if bandwidth else np.full_like(x, achieved)
            ax.plot(x, roof, color=color, lw=2, label=f"{dtype} measured ceiling {achieved / 1e9:,.0f} GFLOP/s")
        peak = profile["datasheet_flops_per_s"].get(dtype)
        if peak:
            ax.axhline(peak, color=color, ls="--", lw=1, label=f"{dtype} datasheet {peak / 1e12:,.1f} TFLOP/s")
        derived = (profile.get("derived_peak_flops_per_s") or {}).get(dtype)
        if derived:
            ax.axhline(derived, color=color, ls="-.", lw=1, label=f"{dtype} derived peak {derived / 1e9:,.0f} GFLOP/s")
    for r in points:
        marker = "o" if r["op"] == "gemm" else "s"
        ax.scatter(
            r["arithmetic_intensity_flops_per_byte"], r["flops_per_s"], color=_COLORS.get(r["dtype"], "k"),
            marker=marker, s=28, zorder=3, edgecolors="k", linewidths=0.4,
        )
    if bandwidth:
        ax.plot(x, bandwidth * x, color="grey", lw=0.8, ls=":", label="measured copy bandwidth x intensity")
    ax.scatter([], [], marker="o", color="grey", label="GEMM shapes")
    ax.scatter([], [], marker="s", color="grey", label="conv2d")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x[0], x[-1])
    y_values = [r["flops_per_s"] for r in points] + ceilings
    if y_values:
        peaks = [v for v in profile["datasheet_flops_per_s"].values() if v]
        peaks += [v for v in (profile.get("derived_peak_flops_per_s") or {}).values() if v]
        y_lo = min(y_values + ([bandwidth * x_lo * 2] if bandwidth else [])) / 2
        ax.set_ylim(y_lo, max(y_values + peaks) * 2)
    ax.set_xlabel("arithmetic intensity (FLOP / byte, minimum traffic)")
    ax.set_ylabel("FLOP/s (2 per multiply-add)")
    bw_text = f"copy bandwidth {bandwidth / 1e9:,.1f} GB/s" if bandwidth else "bandwidth not measured"
    ax.set_title(f"Roofline: {profile['device_name']}\n{bw_text}", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()

    try:
        with atomic_path(path, suffix=".tmp.png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
