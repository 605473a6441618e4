"""Extrapolate the fits to target errors, then convert that compute to CO2 and dollars.

Two conversions:

1. The paper's popular version (IEEE Spectrum, "Deep Learning's Diminishing Returns", 2021):
   1 lb CO2 per 3.4976e17 FLOP and 1 USD per 6.874e16 FLOP.
2. This project's own: measured joules per FLOP (median over measured runs), a configured grid
   carbon intensity and a configured electricity price.

Both apply only to training-compute measures; a forward pass is not a training cost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from analysis.constants import (
    FLOP_PER_LB_CO2_SPECTRUM, FLOP_PER_USD_SPECTRUM, J_PER_KWH, KG_PER_LB, TRAINING_MEASURES,
)
from analysis.fits import Fit

EXTRAPOLATION_COLUMNS = [
    "benchmark", "source", "compute_measure", "model_form", "target", "target_error",
    "log10_compute_flops", "compute_flops", "co2_lb_spectrum", "co2_kg_spectrum",
    "cost_usd_spectrum", "j_per_flop_measured", "energy_j_measured", "co2_kg_measured",
    "cost_usd_measured", "note",
]
# Forms that can be inverted for compute at a given error.
EXTRAPOLATED_FORMS = ("polynomial", "exponential")
FLOAT_MAX_LOG10 = math.log10(np.finfo(float).max)


@dataclass
class EnergyPerFlop:
    """Measured joules per FLOP, for one compute convention."""

    j_per_flop: float
    n_runs: int
    basis: str  # which FLOP count it divides by


def measured_energy_per_flop(runs: pd.DataFrame) -> dict[str, Optional[EnergyPerFlop]]:
    """Median measured J/FLOP per training measure, over fittable runs that have both numbers."""
    out: dict[str, Optional[EnergyPerFlop]] = {m: None for m in TRAINING_MEASURES}
    if runs.empty:
        return out
    for measure, col in (("network_operations", "network_operations"),
                         ("hardware_burden", "hardware_burden")):
        d = runs.dropna(subset=["energy_total_j", col])
        d = d[(d["energy_total_j"] > 0) & (d[col] > 0)]
        if len(d):
            out[measure] = EnergyPerFlop(float((d["energy_total_j"] / d[col]).median()), len(d),
                                         "train_flops" if col == "network_operations"
                                         else "hardware_burden_flops")
    out["hardware_burden_consolidated"] = out["hardware_burden"]
    return out


def _pow10(x: float) -> float:
    if math.isnan(x):
        return math.nan
    return math.inf if x > FLOAT_MAX_LOG10 else 10.0 ** x


def log10_compute_at(fit: Fit, target_error: float) -> tuple[float, str]:
    """log10(compute) at which the fit reaches ``target_error``, or NaN and the reason."""
    if fit.model_form == "exponential":
        if not fit.b > 0:
            return math.nan, "b <= 0: 1/error does not rise with compute"
        return (1.0 / target_error - fit.a) / fit.b, ""
    if not fit.b < 0:
        return math.nan, "b >= 0: error does not fall with compute"
    return (math.log10(target_error) - fit.a) / fit.b, ""


def extrapolate(fits: list[Fit], best_error: dict[tuple[str, str], float],
                targets: dict[str, list[float]], energy: dict[str, Optional[EnergyPerFlop]],
                carbon_intensity_g_per_kwh: float, price_usd_per_kwh: float) -> pd.DataFrame:
    """One row per (fit, target); targets are today's best error plus the configured ones."""
    rows = []
    for fit in fits:
        if not fit.ok or fit.model_form not in EXTRAPOLATED_FORMS:
            continue
        goals: list[tuple[str, float]] = []
        best = best_error.get((fit.benchmark, fit.source))
        if best is not None and not math.isnan(best):
            goals.append(("best_observed", best))
        goals += [(f"{t:g}", float(t)) for t in targets.get(fit.benchmark, [])]
        for label, t in goals:
            lc, note = log10_compute_at(fit, t)
            c = _pow10(lc)
            row = {"benchmark": fit.benchmark, "source": fit.source,
                   "compute_measure": fit.compute_measure, "model_form": fit.model_form,
                   "target": label, "target_error": t, "log10_compute_flops": lc,
                   "compute_flops": c, "note": note}
            if fit.compute_measure in TRAINING_MEASURES and not math.isnan(lc):
                row["co2_lb_spectrum"] = _pow10(lc - math.log10(FLOP_PER_LB_CO2_SPECTRUM))
                row["co2_kg_spectrum"] = row["co2_lb_spectrum"] * KG_PER_LB
                row["cost_usd_spectrum"] = _pow10(lc - math.log10(FLOP_PER_USD_SPECTRUM))
                epf = energy.get(fit.compute_measure)
                if epf is not None:
                    log_j = lc + math.log10(epf.j_per_flop)
                    kwh = _pow10(log_j - math.log10(J_PER_KWH))
                    row["j_per_flop_measured"] = epf.j_per_flop
                    row["energy_j_measured"] = _pow10(log_j)
                    row["co2_kg_measured"] = kwh * carbon_intensity_g_per_kwh / 1000.0
                    row["cost_usd_measured"] = kwh * price_usd_per_kwh
            elif fit.compute_measure not in TRAINING_MEASURES:
                row["note"] = (note + "; " if note else "") + "forward-pass compute: no cost conversion"
            if math.isinf(c):
                row["note"] = (row["note"] + "; " if row["note"] else "") + "beyond float range"
            rows.append(row)
    return pd.DataFrame(rows, columns=EXTRAPOLATION_COLUMNS)
