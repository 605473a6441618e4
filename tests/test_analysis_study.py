"""Tests for the measured study of issue 15: the scaling grids (conf/harness/experiment/scaling_*.yaml),
measured frontier k with its run-bootstrap interval beside the literature's, the Hoffmann et al.
compute-optimal allocation exponent, hardware kept apart, the report's "Measured vs literature"
table and its CSV files, and the committed reference grids.

Runs are tiny synthetic result.json + curve.csv files in the real schema, written into tmp_path;
expected numbers are worked out by hand in each test.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import pandas as pd
import pytest

from analysis.constants import ALLOCATION_BUDGET_RATIO, THEORY_K_MIN
from analysis.fits import Fit, fit_measured, frontier_run_bootstrap_b
from analysis.measured import fittable, hardware_label, load_curves, scan_runs
from analysis.points import build_groups, frontier
from analysis.study import (
    allocation_budgets, allocation_fits, budgets_of, comparison_table, intervals_overlap,
    versus_theory,
)

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("image_classification", "ner", "translation", "detection", "qa")
BENCHMARK_OF = {"image_classification": "imagenet", "ner": "conll2003",
                "translation": "wmt2014_en_fr", "detection": "coco", "qa": "squad1.1"}
CURVE_HEADER = ["eval_index", "train_samples", "train_steps", "epochs", "train_flops",
                "train_time_s", "hardware_burden_flops", "energy_total_j", "wall_time_s",
                "metric_name", "metric_value", "error", "window"]


# --- the experiment grids ------------------------------------------------------------------------

def _compose_experiment(workload: str, *overrides: str, hydra_cfg: bool = True):
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf" / "harness"), version_base="1.3"):
        return compose("config", overrides=[f"experiment=scaling_{workload}", *overrides],
                       return_hydra_config=hydra_cfg)


def _values(text: str) -> list[float]:
    return [float(v) for v in str(text).split(",")]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_scaling_experiment_is_a_grid_of_scales_by_budgets(workload):
    cfg = _compose_experiment(workload)
    assert cfg.workload.name == workload
    params = cfg.hydra.sweeper.params
    scales = _values(params["scale"])
    budget_key = next(k for k in params if k in ("trainer.epochs", "trainer.max_steps"))
    budgets = _values(params[budget_key])
    assert len(set(scales)) >= 4 and len(set(budgets)) >= 3, (scales, budgets)
    # budgets step by 2x, so the grid's anti-diagonals are iso-FLOP budgets
    b = sorted(budgets)
    assert all(hi / lo == pytest.approx(2.0) for lo, hi in zip(b, b[1:])), b
    assert cfg.trainer.num_evals >= 3  # each curve.csv traces its learning curve
    assert cfg.trainer.max_steps is None or budget_key == "trainer.max_steps"
    header = (REPO / "conf" / "harness" / "experiment" / f"scaling_{workload}.yaml").read_text()
    assert "Expected time" in header and "min" in header.split("Expected time")[1][:200]
    # the largest, longest grid point composes too (its overrides are valid keys and values)
    big = _compose_experiment(workload, f"scale={max(scales)}", f"{budget_key}={max(budgets)}",
                              hydra_cfg=False)
    assert big.scale == max(scales)


@pytest.mark.parametrize("workload", ["image_classification", "ner"])
def test_width_only_grids_step_compute_by_2x(workload):
    """ResNet and BiLSTM-CRF FLOPs go as width^2: a sqrt(2) step in scale is 2x in compute."""
    s = sorted(_values(_compose_experiment(workload).hydra.sweeper.params["scale"]))
    assert all((hi / lo) ** 2 == pytest.approx(2.0, rel=0.01) for lo, hi in zip(s, s[1:])), s


# --- synthetic runs ------------------------------------------------------------------------------

def write_run(root: Path, name: str, *, scale: float, epochs: float, error: float,
              train_flops: float, num_params: Optional[float] = None, fwd: Optional[float] = None,
              benchmark: str = "imagenet", dataset: str = "fashion_mnist",
              device_name: str = "AMD EPYC", device_type: str = "cpu", num_threads: int = 2,
              precision: str = "fp32", curve: Optional[list[tuple[float, float]]] = None,
              train_time_s: float = 10.0, energy_j: Optional[float] = 100.0,
              **extra: Any) -> Path:
    """One run folder in the result.json schema; ``curve`` rows are (train_flops, error)."""
    folder = root / name
    folder.mkdir(parents=True)
    config = {"workload": "image_classification", "model": {"name": "resnet"},
              "data": {"name": dataset}, "trainer": {"epochs": epochs, "precision": precision},
              "scale": scale, "seed": 0, "device": device_type}
    result = {
        "run_id": name, "started_at": "2026-11-26T05:00:00+00:00", "status": "ok",
        "benchmark": benchmark, "dataset": dataset, "workload": "image_classification",
        "model": "resnet", "scale": scale, "seed": 0, "config": config,
        "overrides": [f"scale={scale}", f"trainer.epochs={epochs}"],
        "eval_samples": 10000, "eval_is_subset": False, "error": error,
        "metric_value": 1 - error, "num_params": num_params if num_params else 1e5 * scale,
        "fwd_flops_per_sample": fwd if fwd else train_flops / 3e4,
        "train_flops": train_flops, "hardware_burden_flops": 3 * train_flops,
        "train_time_s": train_time_s, "energy_total_j": energy_j,
        "energy_cpu_method": "codecarbon_estimate", "energy_gpu_method": "none",
        "energy_ram_method": "codecarbon_estimate", "device_name": device_name,
        "device_type": device_type, "num_devices": 1, "num_threads": num_threads,
        "precision": precision, "peak_flops_per_s": 1.66e11, "contended": False, "co2_kg": 1e-5,
    }
    result.update(extra)
    (folder / "result.json").write_text(json.dumps(result))
    if curve is not None:
        lines = [",".join(CURVE_HEADER)]
        for i, (flops, err) in enumerate(curve):
            row = {"eval_index": i, "train_samples": 100 * (i + 1), "train_steps": i + 1,
                   "epochs": epochs * (i + 1) / len(curve), "train_flops": flops,
                   "train_time_s": train_time_s * (i + 1) / len(curve),
                   "hardware_burden_flops": 3 * flops, "energy_total_j": 1.0 * (i + 1),
                   "wall_time_s": 2.0 * (i + 1), "metric_name": "top1_accuracy",
                   "metric_value": 1 - err, "error": err, "window": "train steps only"}
            lines.append(",".join(str(row[c]) for c in CURVE_HEADER))
        (folder / "curve.csv").write_text("\n".join(lines) + "\n")
    return folder


def _groups(root: Path):
    runs = fittable(scan_runs(str(root)).runs)
    curves, counts = load_curves(runs)
    groups, _ = build_groups(runs, curves, counts, include_contended=False, min_points=3)
    return groups


def _fits(groups, resamples: int = 200):
    from analysis.constants import COMPUTE_MEASURES

    return fit_measured(groups, COMPUTE_MEASURES, q=0.1, min_points=3, resamples=resamples,
                        ci_level=0.95, seed=0)


def _power_law_runs(root: Path, k: float, num_runs: int = 5, noise: float = 0.0) -> None:
    """Runs whose curves lie on error = 10 * C^(-1/k) (times a seeded noise factor), each run
    covering its own slice of compute: the frontier's exact slope is -1/k when noise is 0."""
    rng = np.random.default_rng(3)
    for r in range(num_runs):
        cs = [10 ** (10 + r + 0.25 * i) for i in range(4)]
        curve = [(c, min(0.99, 10 * c ** (-1 / k) * float(np.exp(noise * rng.standard_normal()))))
                 for c in cs]
        write_run(root, f"run{r}", scale=0.1 * 2 ** r, epochs=1, error=curve[-1][1],
                  train_flops=cs[-1], curve=curve)


# --- hardware is never pooled ----------------------------------------------------------------------

def test_runs_on_other_hardware_are_other_groups(tmp_path):
    for i, s in enumerate((1, 2, 4)):
        write_run(tmp_path, f"cpu{i}", scale=s, epochs=1, error=0.3 / s, train_flops=1e12 * s)
        write_run(tmp_path, f"gpu{i}", scale=s, epochs=1, error=0.3 / s, train_flops=1e12 * s,
                  device_name="NVIDIA H200", device_type="cuda")
    write_run(tmp_path, "bf16", scale=1, epochs=1, error=0.3, train_flops=1e12,
              device_name="NVIDIA H200", device_type="cuda", precision="bf16")
    write_run(tmp_path, "one_thread", scale=1, epochs=1, error=0.3, train_flops=1e12, num_threads=1)
    groups = _groups(tmp_path)
    assert sorted((g.hardware, len(g.runs)) for g in groups) == [
        ("AMD EPYC (cpu), 1 thread, fp32", 1), ("AMD EPYC (cpu), 2 threads, fp32", 3),
        ("NVIDIA H200 (cuda), bf16", 1), ("NVIDIA H200 (cuda), fp32", 3)]
    fits = _fits(groups, resamples=0)
    hw = {f.hardware for f in fits}
    assert "" not in hw and len(hw) == 4  # every measured fit says which hardware it is
    assert hardware_label({"device_name": None, "device_type": None, "num_devices": 1.0,
                           "precision": None}) == "device not recorded, precision not recorded"


def test_an_error_of_one_loads(tmp_path):
    """Box AP, BLEU or F1 of exactly 0 after a short budget: error 1.0 is a result, not corruption."""
    write_run(tmp_path, "zero_ap", scale=1, epochs=0.4, error=1.0, train_flops=1e12)
    assert scan_runs(str(tmp_path)).runs["error"].tolist() == [1.0]


# --- frontier k and its run bootstrap -----------------------------------------------------------

def _frontier_fit(root: Path) -> Fit:
    (g,) = _groups(root)
    return next(x for x in _fits([g]) if x.points == "frontier" and x.model_form == "polynomial"
                and x.compute_measure == "network_operations")


def test_frontier_k_of_an_exact_power_law_and_its_run_bootstrap(tmp_path):
    _power_law_runs(tmp_path, k=8.0)
    f = _frontier_fit(tmp_path)
    assert f.n == 20 and f.num_runs == 5
    assert f.k == pytest.approx(8.0)
    # every resample's frontier lies on the same line: the interval is the point
    assert f.k_ci_low == pytest.approx(8.0) and f.k_ci_high == pytest.approx(8.0)
    assert "bootstrap over the 5 runs" in f.note
    # a run worse than the power law everywhere never reaches the full frontier, so k does not
    # move; it does enter resamples that lack the runs below it, which widens the interval
    write_run(tmp_path, "worse", scale=9, epochs=1, error=0.95, train_flops=1e13,
              curve=[(1e12, 0.98), (1e13, 0.95)])
    f = _frontier_fit(tmp_path)
    assert f.n == 20 and f.k == pytest.approx(8.0) and "over the 6 runs" in f.note
    assert f.k_ci_low < 8.0 - 1e-6 and f.k_ci_high >= 8.0 - 1e-9


def test_run_bootstrap_matches_a_slow_reference():
    """The vectorised bootstrap against points.frontier + np.polyfit, draw by draw."""
    rng = np.random.default_rng(11)
    rows = []
    for r in range(6):
        base = rng.uniform(0.3, 0.9)
        for i in range(5):
            rows.append({"path": f"r{r}", "network_operations": 10 ** (11 + r * 0.3 + 0.2 * i),
                         "error": base * 0.8 ** i * rng.uniform(0.9, 1.1)})
    rows = pd.DataFrame(rows)
    draws = frontier_run_bootstrap_b(rows, "network_operations", 3, 40, np.random.default_rng(5))
    picks = np.random.default_rng(5).integers(0, 6, size=(40, 6))
    paths = np.unique(rows["path"])
    for d in range(40):
        sub = rows[rows["path"].isin(paths[picks[d]])]
        fr = frontier(sub, "network_operations")
        if len(fr) < 3:
            assert math.isnan(draws[d])
            continue
        b = np.polyfit(np.log10(fr["network_operations"]), np.log10(fr["error"]), 1)[0]
        assert draws[d] == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_noisy_frontier_interval_brackets_k_and_too_few_runs_give_none(tmp_path):
    _power_law_runs(tmp_path / "noisy", k=6.0, noise=0.15)
    f = _frontier_fit(tmp_path / "noisy")
    assert f.k_ci_low < f.k < f.k_ci_high

    _power_law_runs(tmp_path / "two", k=6.0, num_runs=2)
    f2 = _frontier_fit(tmp_path / "two")
    assert f2.k == pytest.approx(6.0) and math.isnan(f2.k_ci_low)
    assert "2 run(s) behind the frontier" in f2.note


# --- measured vs literature ----------------------------------------------------------------------

def test_overlap_and_theory_flags():
    assert intervals_overlap(5, 9, 8, 12) is True
    assert intervals_overlap(5, 7.9, 8, 12) is False
    assert intervals_overlap(13, math.inf, 8, 12) is False
    assert intervals_overlap(11, math.inf, 8, 12) is True
    assert intervals_overlap(math.nan, math.nan, 8, 12) is None
    assert THEORY_K_MIN == 4.0
    assert versus_theory(4.0, 9) == "above"
    assert versus_theory(2, 3.9) == "below"
    assert versus_theory(3, 5) == "includes"
    assert versus_theory(math.nan, math.nan) is None


def test_comparison_table_rows_and_overlap():
    g = SimpleNamespace(benchmark="imagenet", dataset="fashion_mnist", eval_set="full n=10000",
                        hardware="AMD EPYC (cpu), 2 threads, fp32", proxy=True)
    g.key = (g.benchmark, g.dataset, g.eval_set, g.hardware)
    lit = Fit("imagenet", "literature", "network_operations", "polynomial", n=77, b=-1 / 12,
              k=12.0, k_ci_low=10.0, k_ci_high=14.5, dataset="imagenet", eval_set="published")
    lit_hb = Fit("imagenet", "literature", "hardware_burden", "polynomial", n=36, b=-0.1, k=10.0,
                 k_ci_low=9.0, k_ci_high=11.0, dataset="imagenet", eval_set="published")
    m = Fit("imagenet", "measured", "network_operations", "polynomial", n=9, b=-0.2, k=5.0,
            k_ci_low=4.5, k_ci_high=11.0, dataset=g.dataset, eval_set=g.eval_set,
            points="frontier", proxy=True, hardware=g.hardware, num_runs=12)
    m_hb = Fit("imagenet", "measured", "hardware_burden", "polynomial", n=9, b=-0.3, k=3.3,
               k_ci_low=3.0, k_ci_high=3.6, dataset=g.dataset, eval_set=g.eval_set,
               points="frontier", proxy=True, hardware=g.hardware, num_runs=12)
    t = comparison_table([g], [lit, lit_hb, m, m_hb])
    ours = t[t["hardware"] == g.hardware].set_index("compute_measure")
    assert ours.loc["network_operations", "intervals_overlap"] == True  # noqa: E712 (numpy bool)
    assert ours.loc["network_operations", "measured_vs_theory"] == "above"
    assert ours.loc["hardware_burden", "intervals_overlap"] == False  # noqa: E712
    assert ours.loc["hardware_burden", "measured_vs_theory"] == "below"
    assert ours.loc["network_operations", "literature_k"] == 12.0
    assert "proxy" in ours.loc["network_operations", "comparable"]
    # every other measured benchmark still has its rows, measured columns null
    others = t[t["hardware"].isna()]
    assert set(others["benchmark"]) == {"coco", "squad1.1", "conll2003", "wmt2014_en_fr"}
    assert others["measured_k"].isna().all()
    assert (others["measured_note"] == "no measured runs of this benchmark under results.root").all()


# --- compute-optimal allocation ------------------------------------------------------------------

def test_budgets_cut_at_sqrt2():
    assert ALLOCATION_BUDGET_RATIO == pytest.approx(math.sqrt(2))
    got = budgets_of(np.array([12.6, 12.0, 12.3, 12.1, 12.449]))
    assert got.tolist() == [2, 0, 1, 0, 1]


def _allocation_runs(root: Path, num_budgets: int) -> None:
    """Budgets C = 1e12, 1e13, ... with three model sizes each; the winner has N = 1e5 *
    (C/1e12)^0.5, its neighbours (N / 10^0.5, N * 10^0.5) lose: N_opt ∝ C^0.5 exactly."""
    for j in range(num_budgets):
        c = 10.0 ** (12 + j)
        n_opt = 1e5 * 10 ** (0.5 * j)
        for i, (n, err) in enumerate([(n_opt / 10 ** 0.5, 0.30), (n_opt, 0.20),
                                      (n_opt * 10 ** 0.5, 0.25)]):
            # a ±5% spread of compute inside a budget, as rounded channel counts give
            write_run(root, f"b{j}_n{i}", scale=n / 1e5, epochs=c / n, error=err - 0.01 * j,
                      train_flops=c * (1 + 0.05 * (i - 1)), num_params=n, fwd=2 * n)


def test_allocation_exponent_is_one_half_by_construction(tmp_path):
    _allocation_runs(tmp_path, num_budgets=4)
    groups = _groups(tmp_path)
    budgets = allocation_budgets(groups)
    assert len(budgets) == 4 and (budgets["num_sizes"] == 3).all() and budgets["used"].all()
    assert list(budgets["n_opt_params"]) == pytest.approx([1e5 * 10 ** (0.5 * j) for j in range(4)])
    assert not budgets["at_grid_edge"].any()
    assert list(budgets["budget_flops"]) == pytest.approx([10.0 ** (12 + j) for j in range(4)],
                                                          rel=0.01)
    a = allocation_fits(groups, budgets).set_index("size_measure")
    # the budgets' geometric-mean compute is within 0.1% of 10^(12+j), so a is 0.5 to 1e-3
    assert a.loc["num_params", "a"] == pytest.approx(0.5, abs=1e-3)
    assert a.loc["fwd_flops_per_sample", "a"] == pytest.approx(0.5, abs=1e-3)
    assert a.loc["num_params", "num_budgets"] == 4


def test_allocation_needs_three_budgets_and_two_sizes(tmp_path):
    _allocation_runs(tmp_path / "two", num_budgets=2)
    groups = _groups(tmp_path / "two")
    a = allocation_fits(groups, allocation_budgets(groups))
    assert a["a"].isna().all()
    assert a["note"].str.contains("too few budgets: 2").all()
    # one size per budget: no choice, so the budget does not count
    for j in range(3):
        write_run(tmp_path / "one", f"r{j}", scale=1, epochs=2 ** j, error=0.3 - 0.05 * j,
                  train_flops=1e12 * 4 ** j)
    groups = _groups(tmp_path / "one")
    b = allocation_budgets(groups)
    assert (~b["used"]).all() and (b["note"] == "one model size: no choice to make").all()
    assert allocation_fits(groups, b)["a"].isna().all()


def test_allocation_on_a_grid_flags_the_edge(tmp_path):
    """A 4 x 3 grid like the experiments': sizes i = 0..3 step 2x in compute, epochs 2x, error
    0.5 / (1 + i + j/2) for epochs 2^j, so at equal compute (i + j fixed) the bigger model wins."""
    for i in range(4):
        for j, ep in enumerate((1, 2, 4)):
            c = 1e12 * 2 ** i * ep
            write_run(tmp_path, f"s{i}_e{j}", scale=2 ** i, epochs=ep, error=0.5 / (1 + i + 0.5 * j),
                      train_flops=c, num_params=1e5 * 2 ** i)
    groups = _groups(tmp_path)
    b = allocation_budgets(groups)
    # anti-diagonals: compute levels 2^0 .. 2^5 hold 1, 2, 3, 3, 2, 1 configurations
    assert list(b["num_configs"]) == [1, 2, 3, 3, 2, 1]
    assert list(b["used"]) == [False, True, True, True, True, False]
    a = allocation_fits(groups, b).set_index("size_measure")
    assert a.loc["num_params", "num_budgets"] == 4
    # winners of the budgets with a choice (levels 1-4): sizes 1, 2, 3, 3 (the largest at 3 and 4)
    used = b[b["used"]]
    assert list(used["n_opt_params"]) == pytest.approx([2e5, 4e5, 8e5, 8e5])
    assert list(used["at_grid_edge"]) == [False, False, True, True]
    assert a.loc["num_params", "a"] > 0
    assert a.loc["num_params", "num_budgets_at_edge"] == 2
    assert "outside the grid" in a.loc["num_params", "note"]


# --- the report and its CSV files ------------------------------------------------------------------

def test_pipeline_writes_the_study_tables_and_report_section(tmp_path, shared_data):
    from hydra import compose, initialize_config_dir

    from analysis.config import register_configs
    from analysis.pipeline import run

    runs = tmp_path / "runs"
    _power_law_runs(runs / "cpu", k=8.0)
    write_run(runs / "gpu", "default", scale=0.25, epochs=0.5, error=0.12, train_flops=5e12,
              device_name="NVIDIA H200", device_type="cuda", curve=[(2.5e12, 0.2), (5e12, 0.12)])
    out = tmp_path / "out"
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf" / "analysis"), version_base="1.3"):
        cfg = compose("analysis", overrides=[
            f"literature.root={shared_data / 'literature'}", f"results.root={runs}",
            f"out_dir={out}", f"cache_dir={tmp_path / 'cache'}", "within_family.enabled=false",
            "literature.epoch=false", "fit.bootstrap_resamples=50", "figures.formats=[png]",
            "figures.dpi=50"])
    run(cfg)
    cmp_ = pd.read_csv(out / "measured_vs_literature.csv")
    cpu = cmp_[(cmp_["hardware"] == "AMD EPYC (cpu), 2 threads, fp32")
               & (cmp_["compute_measure"] == "network_operations")].iloc[0]
    assert cpu["measured_k"] == pytest.approx(8.0) and cpu["measured_n"] == 20
    assert cpu["literature_k"] == pytest.approx(12.0, abs=0.1)  # ImageNet, network operations
    assert cpu["theory_k_min"] == 4 and cpu["proxy"]
    gpu = cmp_[cmp_["hardware"] == "NVIDIA H200 (cuda), fp32"]
    assert len(gpu) == 2 and gpu["measured_k"].isna().all()  # one run: too few points, apart
    assert set(cmp_["benchmark"]) == {"imagenet", "coco", "squad1.1", "conll2003", "wmt2014_en_fr"}
    for name in ("allocation_budgets.csv", "allocation_fits.csv", "measured_hardware.csv"):
        assert (out / name).is_file()
    hw = pd.read_csv(out / "measured_hardware.csv").set_index("hardware")
    # runs 0-4 end at train_flops 10^(10.75 + r) after 10 s: the median rate is 10^12.75 / 10
    assert hw.loc["AMD EPYC (cpu), 2 threads, fp32", "achieved_flops_per_s"] == pytest.approx(
        10 ** 12.75 / 10.0)
    html = (out / "report.html").read_text()
    section = html.split("<h2>Measured vs literature</h2>")[1].split("<h2>Figures</h2>")[0]
    assert "What this can and cannot say" in section and "are proxies" in section
    assert "fashion_mnist (PROXY)" in section and "Compute-optimal allocation" in section
    assert "class='pair'" in section and "J/FLOP" in section


# --- the committed reference grids ---------------------------------------------------------------

def _committed_grids(workload: str) -> list[Path]:
    """results/reference/<device>/<workload>/ folders that hold at least one result.json."""
    base = REPO / "results" / "reference"
    return sorted(p for p in base.glob(f"*/{workload}") if p.is_dir() and any(p.rglob("result.json")))


@pytest.mark.parametrize("workload", WORKLOADS)
def test_committed_grid_loads_and_has_a_measured_fit_of_five_points(workload):
    folders = _committed_grids(workload)
    if not folders:
        pytest.skip(f"no committed grid under results/reference/<device>/{workload}/ yet: the "
                    "issue-15 grids are not committed yet (python -m harness -m "
                    f"experiment=scaling_{workload} hydra.sweep.dir=results/reference/<device>/{workload})")
    for folder in folders:
        groups = _groups(folder)  # strict: any bad file fails here
        assert len(groups) == 1, f"{folder}: one grid, one hardware and dataset: {[g.key for g in groups]}"
        (g,) = groups
        assert g.benchmark == BENCHMARK_OF[workload]
        fits = _fits(groups, resamples=100)
        final = next(f for f in fits if (f.points, f.compute_measure, f.model_form)
                     == ("final", "network_operations", "polynomial"))
        front = next(f for f in fits if (f.points, f.compute_measure, f.model_form)
                     == ("frontier", "network_operations", "polynomial"))
        assert final.n >= 5, f"{folder}: {final.n} distinct configurations"
        assert front.n >= 5 and front.b < 0, f"{folder}: frontier n={front.n}, b={front.b}"


def test_report_table_has_one_row_per_benchmark_without_a_fit():
    from analysis.report import comparison_display

    g = [SimpleNamespace(benchmark="conll2003", dataset="conll2003", eval_set="full n=3453",
                         hardware=hw, proxy=False) for hw in ("NVIDIA H200 (cuda), fp32",
                                                              "NVIDIA H200 (cuda), bf16")]
    for x in g:
        x.key = (x.benchmark, x.dataset, x.eval_set, x.hardware)
    one_run = [Fit("conll2003", "measured", "network_operations", "polynomial", n=2,
                   dataset="conll2003", eval_set=x.eval_set, points="frontier", hardware=x.hardware,
                   note="too few points: n=2 < 3") for x in g]
    t = comparison_display(comparison_table(g, one_run), "network_operations")
    assert list(t["benchmark"]) == ["ImageNet", "MS COCO", "SQuAD 1.1", "CoNLL-2003",
                                    "WMT 2014 En-Fr"]
    row = t[t["benchmark"] == "CoNLL-2003"].iloc[0]
    assert row["measured k"] == "–" and row["note"].count("too few points: n=2 < 3") == 2
