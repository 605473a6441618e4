"""Extrapolate the fits to target errors, then convert that compute to CO2 and dollars.

Two conversions:

1. The paper's popular version (IEEE Spectrum, "Deep Learning's Diminishing Returns", 2021):
   1 lb CO2 per 3.4976e17 FLOP and 1 USD per 6.874e16 FLOP.
2. This project's runs: joules per FLOP (median over runs), a configured grid carbon intensity
   and a configured electricity price. The joules come from whatever the run's meters were, so
   every such figure is labelled with its basis: the hardware (``device_name``) and the energy
   method of each component. ``codecarbon_estimate`` is an estimate (codecarbon's TDP model for
   the CPU, a per-DIMM constant for RAM), ``rapl``, ``nvml_counter`` and
   ``nvml_power_sampling`` are measurements. Runs are never pooled across devices or methods:
   each (device, methods) gives its own J/FLOP and its own extrapolation row. Contended runs
   are left out (their energy covers other jobs' load) unless ``fit.include_contended=true``.

Both apply only to training-compute measures; a forward pass is not a training cost. A measured
fit uses the J/FLOP of its own group's runs; a literature fit uses every run's, per device.

Columns of extrapolations.csv beyond the fit's identity (see :mod:`analysis.fits`):
``j_per_flop_run`` (median J/FLOP of the runs), ``j_per_flop_kind`` (``measured``,
``estimate``, ``partly estimated`` or ``method not recorded``), ``j_per_flop_basis`` (device,
methods, kind, the FLOP count divided by, and the run count), ``j_per_flop_num_runs``, and
``energy_j_run``, ``co2_kg_run``, ``cost_usd_run`` derived from it.

A proxy dataset's fit is extrapolated only to its own lowest observed error: the benchmark's
targets (e.g. 1% ImageNet top-1 error) mean nothing on Fashion-MNIST, so they are not applied.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from analysis.constants import (
    ENERGY_COMPONENTS, ESTIMATED_ENERGY_METHODS, FLOP_PER_LB_CO2_SPECTRUM, FLOP_PER_USD_SPECTRUM,
    GROUP_KEY, J_PER_KWH, KG_PER_LB, MEASURED_ENERGY_METHODS, TRAINING_MEASURES,
)
from analysis.fits import Fit
from analysis.measured import device_label

EXTRAPOLATION_COLUMNS = [
    "benchmark", "dataset", "eval_set", "source", "points", "proxy", "compute_measure",
    "model_form", "target", "target_error", "log10_compute_flops", "compute_flops",
    "co2_lb_spectrum", "co2_kg_spectrum", "cost_usd_spectrum", "j_per_flop_run",
    "j_per_flop_kind", "j_per_flop_basis", "j_per_flop_num_runs", "energy_j_run", "co2_kg_run",
    "cost_usd_run", "note", "hardware",
]
# Forms that can be inverted for compute at a given error.
EXTRAPOLATED_FORMS = ("polynomial", "exponential")
FLOAT_MAX_LOG10 = math.log10(np.finfo(float).max)
# Which run column each training measure's J/FLOP divides by; the consolidated burden uses the
# burden's (it is the burden where measured).
ENERGY_DIVISOR = {"network_operations": "network_operations", "hardware_burden": "hardware_burden",
                  "hardware_burden_consolidated": "hardware_burden"}
DIVISOR_NAME = {"network_operations": "train_flops", "hardware_burden": "hardware_burden_flops"}


def energy_kind(methods: dict[str, Optional[str]]) -> str:
    """``measured``, ``estimate``, ``partly estimated`` or ``method not recorded``.

    Components with method ``none`` (no meter) are not part of the total and do not count.
    """
    used = [m for m in methods.values() if m != "none"]
    if not used or any(m is None for m in used):
        return "method not recorded"
    est = [m in ESTIMATED_ENERGY_METHODS for m in used]
    if all(m in MEASURED_ENERGY_METHODS for m in used):
        return "measured"
    if all(est):
        return "estimate"
    if any(est):
        return "partly estimated"
    return "method not recorded"


def kind_words(kind: str) -> str:
    """How the report says it: an estimate is never called a measurement."""
    return {"estimate": "estimated (codecarbon TDP model)",
            "partly estimated": "partly estimated (codecarbon TDP model for some components)",
            "measured": "measured (hardware energy counters)",
            }.get(kind, "energy method not recorded")


@dataclass
class EnergyPerFlop:
    """Joules per FLOP of a set of runs on one device with one set of energy methods."""

    measure: str  # training compute measure this J/FLOP converts
    j_per_flop: float
    n_runs: int
    divides_by: str  # result.json key divided by
    device: str
    methods: str  # "cpu=..., gpu=..., ram=..."
    kind: str  # see energy_kind
    group: Optional[tuple[str, ...]] = None  # (benchmark, dataset, eval_set, hardware); None: all runs

    @property
    def basis(self) -> str:
        return (f"{self.device}; {self.methods}; {self.kind}; energy_total_j / {self.divides_by}, "
                f"median of {self.n_runs} run(s)")


def energy_per_flop(runs: pd.DataFrame, by_group: bool) -> list[EnergyPerFlop]:
    """Median J/FLOP per (device, energy methods) and training measure, over runs with both
    numbers; per (benchmark, dataset, eval set) group too when ``by_group``.

    ``runs`` should already have contended runs' energy blanked (analysis.points.build_groups).
    """
    out: list[EnergyPerFlop] = []
    if runs.empty:
        return out
    d = runs.copy()
    d["_device"] = d.apply(device_label, axis=1)
    d["_methods"] = d.apply(lambda r: ", ".join(f"{c}={r.get(f'energy_{c}_method') or 'not recorded'}"
                                                for c in ENERGY_COMPONENTS), axis=1)
    keys = (list(GROUP_KEY) if by_group else []) + ["_device", "_methods"]
    for measure in TRAINING_MEASURES:
        col = ENERGY_DIVISOR[measure]
        ok = d.dropna(subset=["energy_total_j", col])
        ok = ok[(ok["energy_total_j"] > 0) & (ok[col] > 0)]
        for key, g in ok.groupby(keys, sort=True):
            first = g.iloc[0]
            methods = {c: first.get(f"energy_{c}_method") for c in ENERGY_COMPONENTS}
            out.append(EnergyPerFlop(
                measure, float((g["energy_total_j"] / g[col]).median()), len(g), DIVISOR_NAME[col],
                first["_device"], first["_methods"], energy_kind(methods),
                tuple(key[:len(GROUP_KEY)]) if by_group else None))
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


def extrapolate(fits: list[Fit], best_error: dict[tuple, float], targets: dict[str, list[float]],
                energy: list[EnergyPerFlop], carbon_intensity_g_per_kwh: float,
                price_usd_per_kwh: float) -> pd.DataFrame:
    """One row per (fit, target, J/FLOP basis); targets are the data's lowest error plus the
    configured ones (not for proxies). ``best_error`` is keyed by :attr:`Fit.group`; a fit
    missing there uses its own lowest fitted error.

    ``energy`` holds per-group entries (used by measured fits of that group) and entries with
    ``group=None`` (used by literature fits). A fit with no matching entry gets one row with the
    run-based columns empty.
    """
    rows = []
    for fit in fits:
        if not fit.ok or fit.model_form not in EXTRAPOLATED_FORMS:
            continue
        goals: list[tuple[str, float]] = []
        best = best_error.get(fit.group, fit.min_error)
        if best is not None and not math.isnan(best):
            goals.append(("best_observed", best))
        skipped = ""
        if fit.proxy:
            if targets.get(fit.benchmark):
                skipped = (f"proxy dataset {fit.dataset}: the {fit.benchmark} targets are not "
                           "applied")
        else:
            goals += [(f"{t:g}", float(t)) for t in targets.get(fit.benchmark, [])]
        if fit.source == "measured":
            key = (fit.benchmark, fit.dataset, fit.eval_set, fit.hardware)
            bases = [e for e in energy if e.group == key and e.measure == fit.compute_measure]
        else:
            bases = [e for e in energy if e.group is None and e.measure == fit.compute_measure]
        for label, t in goals:
            lc, note = log10_compute_at(fit, t)
            c = _pow10(lc)
            base = {"benchmark": fit.benchmark, "dataset": fit.dataset, "eval_set": fit.eval_set,
                    "hardware": fit.hardware, "source": fit.source, "points": fit.points, "proxy": fit.proxy,
                    "compute_measure": fit.compute_measure, "model_form": fit.model_form,
                    "target": label, "target_error": t, "log10_compute_flops": lc,
                    "compute_flops": c}
            notes = [n for n in (note, skipped) if n]
            if fit.compute_measure in TRAINING_MEASURES and not math.isnan(lc):
                base["co2_lb_spectrum"] = _pow10(lc - math.log10(FLOP_PER_LB_CO2_SPECTRUM))
                base["co2_kg_spectrum"] = base["co2_lb_spectrum"] * KG_PER_LB
                base["cost_usd_spectrum"] = _pow10(lc - math.log10(FLOP_PER_USD_SPECTRUM))
            elif fit.compute_measure not in TRAINING_MEASURES:
                notes.append("forward-pass compute: no cost conversion")
            if math.isinf(c):
                notes.append("beyond float range")
            for epf in (bases if "co2_lb_spectrum" in base else []) or [None]:
                row = dict(base, note="; ".join(notes))
                if epf is not None:
                    log_j = lc + math.log10(epf.j_per_flop)
                    kwh = _pow10(log_j - math.log10(J_PER_KWH))
                    row.update(j_per_flop_run=epf.j_per_flop, j_per_flop_kind=epf.kind,
                               j_per_flop_basis=epf.basis, j_per_flop_num_runs=epf.n_runs,
                               energy_j_run=_pow10(log_j),
                               co2_kg_run=kwh * carbon_intensity_g_per_kwh / 1000.0,
                               cost_usd_run=kwh * price_usd_per_kwh)
                rows.append(row)
    return pd.DataFrame(rows, columns=EXTRAPOLATION_COLUMNS)
