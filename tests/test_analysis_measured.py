"""Tests for the measured half of analysis/ (issue 7): fits per (benchmark, dataset, eval set),
replicates merged into one point, the compute-efficient frontier from curve.csv, contended runs
left out of time- and energy-based fits, and J/FLOP labelled by device and energy method.

Runs are small synthetic result.json + curve.csv files written into tmp_path. Expected numbers
are worked out by hand in each test.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import pytest

from analysis.config import register_configs
from analysis.errors import AnalysisError
from analysis.extrapolate import energy_kind, energy_per_flop
from analysis.fits import fit_one
from analysis.measured import fittable, load_curves, load_runs, read_result
from analysis.points import build_groups, frontier, merge_replicates

REPO = Path(__file__).resolve().parents[1]
CURVE_HEADER = ["eval_index", "train_samples", "train_steps", "epochs", "train_flops",
                "train_time_s", "hardware_burden_flops", "energy_total_j", "wall_time_s",
                "metric_name", "metric_value", "error", "window"]


def write_run(root: Path, name: str, *, scale: float, seed: int = 0, dataset: str = "imagenet",
              error: float = 0.3, train_flops: float = 1e12, burden: Any = "auto",
              energy_j: Optional[float] = 100.0, contended: Optional[bool] = False,
              eval_samples: int = 50000, eval_is_subset: Optional[bool] = False,
              curve: Optional[list[tuple[float, Optional[float], float]]] = None,
              curve_columns: Optional[list[str]] = None, config: Any = "default",
              **extra: Any) -> Path:
    """One run folder: result.json (and curve.csv when ``curve`` is given as (train_flops,
    hardware_burden_flops, error) rows). ``config="default"`` builds a resolved config whose
    identity is (model, scale, dataset); its seed, run name, device and measure vary freely."""
    folder = root / name
    folder.mkdir(parents=True)
    if burden == "auto":
        burden = 10 * train_flops
    if config == "default":
        config = {"workload": "image_classification", "model": {"name": "resnet", "depth": 18},
                  "data": {"name": dataset, "root": f"/data/{name}", "download": False,
                           "eval_subset": None},
                  "trainer": {"epochs": 1.0, "progress": False}, "scale": scale,
                  "device": "cpu", "seed": seed, "run_name": name,
                  "measure": {"codecarbon": True, "hardware_profiles_dir": f"/tmp/{name}"}}
    result = {
        "run_id": name, "started_at": "2026-11-25T10:00:00+00:00", "status": "ok",
        "benchmark": "imagenet", "dataset": dataset, "workload": "image_classification",
        "model": "resnet", "scale": scale, "seed": seed, "overrides": [f"scale={scale}",
                                                                      f"seed={seed}"],
        "config": config, "eval_samples": eval_samples, "eval_is_subset": eval_is_subset,
        "error": error, "metric_value": 1 - error, "fwd_flops_per_sample": train_flops / 3e4,
        "train_flops": train_flops, "hardware_burden_flops": burden, "train_time_s": 10.0,
        "energy_total_j": energy_j, "energy_cpu_method": "codecarbon_estimate",
        "energy_gpu_method": "none", "energy_ram_method": "codecarbon_estimate",
        "energy_assumptions": {"cpu": "4 W per thread"}, "device_name": "Intel Xeon",
        "device_type": "cpu", "num_devices": 1, "peak_flops_per_s": 1e11, "contended": contended,
        "co2_kg": 1e-5,
    }
    result.update(extra)
    (folder / "result.json").write_text(json.dumps(result))
    if curve is not None:
        cols = curve_columns or CURVE_HEADER
        lines = [",".join(cols)]
        for i, (flops, hb, err) in enumerate(curve):
            row = {"eval_index": i, "train_samples": 100 * (i + 1), "train_steps": i + 1,
                   "epochs": 0.5 * (i + 1), "train_flops": flops, "train_time_s": 1.0 * (i + 1),
                   "hardware_burden_flops": "" if hb is None else hb, "energy_total_j": 10 * (i + 1),
                   "wall_time_s": 2.0 * (i + 1), "metric_name": "top1_accuracy",
                   "metric_value": 1 - err, "error": err, "window": "timed training steps"}
            lines.append(",".join(str(row[c]) for c in cols))
        (folder / "curve.csv").write_text("\n".join(lines) + "\n")
    return folder


def seven_runs(root: Path) -> None:
    """Seven runs of two datasets: three configurations each; imagenet's scale=2 is replicated."""
    for name, ds, scale, seed, err in [
        ("in_s1", "imagenet", 1, 0, 0.40), ("in_s2a", "imagenet", 2, 0, 0.30),
        ("in_s2b", "imagenet", 2, 1, 0.34), ("in_s4", "imagenet", 4, 0, 0.24),
        ("fm_s1", "fashion_mnist", 1, 0, 0.20), ("fm_s2", "fashion_mnist", 2, 0, 0.15),
        ("fm_s4", "fashion_mnist", 4, 0, 0.12),
    ]:
        f = 1e12 * scale
        write_run(root, name, dataset=ds, scale=scale, seed=seed, error=err, train_flops=f,
                  burden=10 * f * (1 + 0.1 * seed), energy_j=1e-10 * f,
                  curve=[(f / 2, 5 * f, min(0.9, err * 1.5)), (f, 10 * f, err)])


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf" / "analysis"), version_base="1.3"):
        return compose(config_name="analysis", overrides=overrides)


@pytest.fixture(scope="module")
def lit_root(shared_data: Path) -> Path:
    return shared_data / "literature"


def _run_pipeline(lit_root: Path, tmp_path: Path, runs: Path, *extra: str,
                  formats: str = "[png]"):
    from analysis.pipeline import run

    out = tmp_path / "out"
    cfg = _compose([f"literature.root={lit_root}", f"results.root={runs}", f"out_dir={out}",
                    f"cache_dir={tmp_path / 'cache'}", "within_family.enabled=false",
                    "fit.bootstrap_resamples=50", f"figures.formats={formats}", *extra])
    return run(cfg), out


@pytest.fixture(scope="module")
def seven(lit_root, tmp_path_factory):
    """The seven-run pipeline, run once (figures dominate its time), recording which measured
    groups were handed to the literature's axes."""
    import analysis.pipeline as pipeline

    tmp = tmp_path_factory.mktemp("seven")
    seven_runs(tmp / "runs")
    drawn: list = []
    real = pipeline.benchmark_figure

    def spy(bench, lit, own, proxies, *args, **kwargs):
        drawn.extend(own)
        return real(bench, lit, own, proxies, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "benchmark_figure", spy)
        res, out = _run_pipeline(lit_root, tmp, tmp / "runs", formats="[png,svg]")
    return res, out, drawn


def _groups(root: Path, include_contended: bool = False):
    runs = fittable(load_runs(str(root)))
    curves, counts = load_curves(runs)
    return build_groups(runs, curves, counts, include_contended, 3)


# --- the acceptance check ------------------------------------------------------------------------

def test_seven_runs_of_two_datasets_give_separate_fits_and_no_proxy_on_literature_axes(seven):
    res, out, drawn = seven
    fits = pd.read_csv(out / "fits.csv")
    m = fits[(fits["source"] == "measured") & (fits["points"] == "final")
             & (fits["model_form"] == "polynomial") & (fits["compute_measure"] == "network_operations")]
    assert sorted(m["dataset"]) == ["fashion_mnist", "imagenet"]
    assert (m["n"] == 3).all()
    assert dict(zip(m["dataset"], m["num_runs"])) == {"imagenet": 4, "fashion_mnist": 3}
    assert dict(zip(m["dataset"], m["proxy"])) == {"imagenet": False, "fashion_mnist": True}
    # literature rows carry the benchmark's own dataset
    lit = fits[fits["source"] == "literature"]
    assert set(zip(lit["benchmark"], lit["dataset"])) >= {("imagenet", "imagenet"), ("coco", "coco"),
                                                          ("squad1.1", "squad1.1")}
    # the literature fit is untouched by the runs
    lp = lit[(lit["benchmark"] == "imagenet") & (lit["compute_measure"] == "forward_pass")
             & (lit["model_form"] == "polynomial")].iloc[0]
    assert lp["b"] == pytest.approx(-0.0821, abs=5e-5)

    # only imagenet's own runs were handed to the literature's axes
    assert drawn and all(not g.proxy and g.dataset == "imagenet" for g in drawn)
    svg = (out / "figures" / "imagenet.svg").read_text()
    assert "measured on imagenet" in svg and "measured on fashion_mnist" not in svg
    proxy_svg = next((out / "figures").glob("measured_imagenet_fashion_mnist*.svg")).read_text()
    assert "PROXY" in proxy_svg and "not comparable" in proxy_svg
    # the k summary leaves the proxy out, and says so
    ks = (out / "figures" / "k_summary.svg").read_text()
    assert "fashion_mnist" not in ks and "proxy datasets not shown" in ks
    ep = (out / "figures" / "epoch_context.svg").read_text()
    assert "3 run(s) on proxy datasets not shown" in ep

    # no ImageNet target is applied to the proxy's fit; its rows say which dataset they are
    ext = pd.read_csv(out / "extrapolations.csv")
    px = ext[ext["dataset"] == "fashion_mnist"]
    assert len(px) and set(px["target"]) == {"best_observed"}
    assert px["note"].str.contains("targets are not applied").all()
    own = ext[(ext["dataset"] == "imagenet") & (ext["source"] == "measured")]
    assert {"0.05", "0.01"} <= set(own["target"])
    # the measured points table and the terminal summary
    pts = pd.read_csv(out / "measured_points.csv")
    assert set(pts["points"]) == {"final", "frontier"}
    assert any("PROXY" in line for line in res.summary)
    assert any(line.startswith("* proxy dataset") for line in res.summary)


# --- replicates ----------------------------------------------------------------------------------

def test_replicates_merge_into_one_point_with_their_spread(tmp_path):
    seven_runs(tmp_path)
    groups, summary = _groups(tmp_path)
    g = next(x for x in groups if x.dataset == "imagenet")
    pts = g.final["network_operations"]
    assert len(pts) == 3 and list(pts["num_runs"]) == [1, 2, 1]
    two = pts.iloc[1]
    assert two["error"] == pytest.approx(0.32)
    assert two["error_std"] == pytest.approx(np.std([0.30, 0.34], ddof=1))
    assert two["seeds"] == "0 1"
    assert math.isnan(pts.iloc[0]["error_std"])  # one run: no spread, never 0
    # burden differs between the replicates (seed 1 ran 10% longer): mean and spread of compute
    hb = g.final["hardware_burden"].iloc[1]
    assert hb["hardware_burden"] == pytest.approx(2e13 * 1.05)
    assert hb["compute_flops_std"] > 0
    assert summary.num_configs == 6 and summary.num_runs == 7


def test_identity_ignores_seed_device_paths_and_measurement_settings(tmp_path):
    a = write_run(tmp_path, "a", scale=1, seed=0)
    b = write_run(tmp_path, "b", scale=1, seed=7, device_name="other")
    c = write_run(tmp_path, "c", scale=2, seed=0)
    ra, rb, rc = (read_result(p / "result.json") for p in (a, b, c))
    assert ra["config_id"] == rb["config_id"] != rc["config_id"]
    assert ra["identity_basis"] == "config"
    # without a config: the overrides minus seed=
    d = write_run(tmp_path, "d", scale=1, seed=3, config=None, overrides=["scale=1", "seed=3"])
    e = write_run(tmp_path, "e", scale=1, seed=4, config=None, overrides=["seed=4", "scale=1"])
    rd, re_ = (read_result(p / "result.json") for p in (d, e))
    assert rd["config_id"] == re_["config_id"] and rd["identity_basis"] == "overrides"
    # a config key that does change the training keeps runs apart
    cfg = json.loads((a / "result.json").read_text())["config"]
    cfg["trainer"]["epochs"] = 2.0
    f = write_run(tmp_path, "f", scale=1, config=cfg)
    assert read_result(f / "result.json")["config_id"] != ra["config_id"]
    # speed settings (issue 16) do not: a compiled, prefetched run is a replicate of the plain one
    fast = json.loads((a / "result.json").read_text())["config"]
    fast["trainer"].update(compile=True, compile_backend="inductor", compile_mode="reduce-overhead",
                           prefetch_batches=2, checkpoint_every_s=600.0)
    fast["workload"] = {"name": "image_classification", "fold_batchnorm": False}
    plain = json.loads((a / "result.json").read_text())["config"]
    plain["workload"] = {"name": "image_classification", "fold_batchnorm": True}
    g = write_run(tmp_path, "g", scale=1, config=fast)
    h = write_run(tmp_path, "h", scale=1, config=plain)
    assert read_result(g / "result.json")["config_id"] == read_result(h / "result.json")["config_id"]


def test_merge_replicates_by_hand():
    runs = pd.DataFrame({"config_id": ["x", "x", "y"], "network_operations": [1e12, 1e12, 4e12],
                         "error": [0.5, 0.3, 0.2], "year": [2026.0] * 3, "seed": [0.0, 1.0, 0.0],
                         "run_id": ["a", "b", "c"], "path": ["a", "b", "c"]})
    pts = merge_replicates(runs, "network_operations")
    assert list(pts["config_id"]) == ["x", "y"] and list(pts["num_runs"]) == [2, 1]
    assert list(pts["error"]) == pytest.approx([0.4, 0.2])
    assert pts.iloc[0]["error_std"] == pytest.approx(math.sqrt(0.02))
    assert pts.iloc[0]["compute_flops_std"] == 0.0


# --- subset vs full test set ---------------------------------------------------------------------

def test_subset_and_full_test_set_runs_are_never_pooled(tmp_path):
    for i, s in enumerate((1, 2, 4)):
        write_run(tmp_path, f"full{i}", scale=s, error=0.4 - 0.05 * i, train_flops=1e12 * s)
        write_run(tmp_path, f"sub{i}", scale=s, error=0.38 - 0.05 * i, train_flops=1e12 * s,
                  eval_samples=300, eval_is_subset=True)
        # an older file without eval_is_subset is its own group too
        write_run(tmp_path, f"old{i}", scale=s, error=0.39 - 0.05 * i, train_flops=1e12 * s,
                  eval_samples=300, eval_is_subset=None)
    # a full-set run with another eval size (another test set) is apart as well
    write_run(tmp_path, "other", scale=8, error=0.2, eval_samples=10000)
    groups, _ = _groups(tmp_path)
    sets = {g.eval_set: len(g.runs) for g in groups}
    assert sets == {"full n=50000": 3, "subset n=300": 3, "unrecorded n=300": 3,
                    "full n=10000": 1}
    assert all(not g.proxy for g in groups)  # a subset of imagenet is still imagenet


# --- frontier ------------------------------------------------------------------------------------

def test_frontier_by_hand():
    rows = pd.DataFrame({
        "train_flops": [1, 2, 3, 4, 2, 3, 5, 5, 6, 0, None],
        "error": [0.9, 0.7, 0.72, 0.5, 0.6, 0.6, 0.55, 0.4, 0.4, 0.95, 0.1],
    })
    f = frontier(rows, "train_flops")
    # (2, 0.6) beats (2, 0.7); (3, *) and (5, 0.55) are dominated; (5, 0.4) is kept and (6, 0.4)
    # is not (no lower error); compute 0 and unknown compute are left out.
    assert list(zip(f["train_flops"], f["error"])) == [(1, 0.9), (2, 0.6), (4, 0.5), (5, 0.4)]


def test_frontier_over_curves_and_old_runs_without_curves_still_load(tmp_path):
    write_run(tmp_path, "a", scale=1, error=0.5, train_flops=4e12,
              curve=[(1e12, 1e13, 0.8), (2e12, 2e13, 0.6), (4e12, 4e13, 0.5)])
    write_run(tmp_path, "b", scale=2, error=0.3, train_flops=8e12,
              curve=[(2e12, 2e13, 0.7), (4e12, 4e13, 0.45), (8e12, 8e13, 0.3)])
    # older curve.csv without hardware_burden_flops and window columns
    old_cols = [c for c in CURVE_HEADER if c not in ("hardware_burden_flops", "window")]
    write_run(tmp_path, "c", scale=4, error=0.2, train_flops=16e12,
              curve=[(8e12, None, 0.35), (16e12, None, 0.2)], curve_columns=old_cols)
    write_run(tmp_path, "d", scale=8, error=0.15, train_flops=32e12)  # no curve.csv at all
    groups, summary = _groups(tmp_path)
    assert summary.curve_counts == {"no_curve": 1, "no_burden_column": 1, "no_window_column": 1}
    (g,) = groups
    no = g.frontier["network_operations"]
    assert list(zip(no["network_operations"], no["error"])) == [
        (1e12, 0.8), (2e12, 0.6), (4e12, 0.45), (8e12, 0.3), (16e12, 0.2)]
    assert list(no["run_id"]) == ["a", "a", "b", "b", "c"]
    hb = g.frontier["hardware_burden"]  # run c has no burden column: skipped there
    assert list(zip(hb["hardware_burden"], hb["error"])) == [
        (1e13, 0.8), (2e13, 0.6), (4e13, 0.45), (8e13, 0.3)]


def test_frontier_fits_are_separate_rows(seven):
    _, out, _ = seven
    fits = pd.read_csv(out / "fits.csv")
    fr = fits[(fits["points"] == "frontier") & (fits["dataset"] == "imagenet")]
    assert set(fr["compute_measure"]) == {"network_operations", "hardware_burden"}
    assert set(fr["model_form"]) == {"polynomial", "exponential"}
    poly = fr[(fr["model_form"] == "polynomial") & (fr["compute_measure"] == "network_operations")].iloc[0]
    # imagenet curves (1e12 FLOP, error): s1 (0.5, 0.6) (1, 0.40); s2a (1, 0.45) (2, 0.30);
    # s2b (1, 0.51) (2, 0.34); s4 (2, 0.36) (4, 0.24). Frontier: (0.5, 0.6) (1, 0.40) (2, 0.30)
    # (4, 0.24): four points from three runs, two residual d.o.f.
    assert poly["n"] == 4 and poly["num_runs"] == 3
    assert math.isnan(poly["k_ci_low"]) and "residual d.o.f." in poly["note"]
    pts = pd.read_csv(out / "measured_points.csv")
    fp = pts[(pts["points"] == "frontier") & (pts["dataset"] == "imagenet")
             & (pts["compute_measure"] == "network_operations")]
    assert list(fp["error"]) == pytest.approx([0.6, 0.4, 0.3, 0.24])
    assert list(fp["run_ids"]) == ["in_s1", "in_s1", "in_s2a", "in_s4"]


def test_frontier_fit_has_no_interval_even_with_enough_points():
    d = pd.DataFrame({"error": [0.5, 0.4, 0.3, 0.25, 0.2, 0.18],
                      "network_operations": [1e12, 2e12, 4e12, 8e12, 16e12, 32e12]})
    f = fit_one(d, "imagenet", "measured", "network_operations", "polynomial", 0.1, 3, 200, 0.95,
                np.random.default_rng(0), points="frontier", interval=False)
    assert f.ok and math.isnan(f.k_ci_low) and f.cov is None and "not independent" in f.note


# --- thin fits ------------------------------------------------------------------------------------

def test_no_interval_under_three_residual_dof():
    d = pd.DataFrame({"error": [0.4, 0.3, 0.25, 0.2], "network_operations": [1e12, 2e12, 4e12, 8e12]})
    f = fit_one(d, "imagenet", "measured", "network_operations", "polynomial", 0.1, 3, 200, 0.95,
                np.random.default_rng(0))
    assert f.ok and f.n == 4 and not math.isnan(f.k)
    assert math.isnan(f.k_ci_low) and math.isnan(f.k_ci_high) and f.cov is None
    assert "residual d.o.f." in f.note and "no k interval or confidence band" in f.note
    d5 = pd.concat([d, pd.DataFrame({"error": [0.17], "network_operations": [16e12]})])
    f5 = fit_one(d5, "imagenet", "measured", "network_operations", "polynomial", 0.1, 3, 200,
                 0.95, np.random.default_rng(0))
    assert not math.isnan(f5.k_ci_low) and f5.cov is not None and "d.o.f." not in f5.note


# --- contention -----------------------------------------------------------------------------------

def _contended_runs(root: Path) -> None:
    for i, s in enumerate((1, 2, 4, 8)):
        write_run(root, f"q{i}", scale=s, error=0.4 - 0.05 * i, train_flops=1e12 * s,
                  burden=1e13 * s, energy_j=100.0 * s, contended=False if i < 2 else None)
    # slowed 10x by other jobs: burden and energy inflated
    write_run(root, "busy", scale=16, error=0.18, train_flops=16e12, burden=1.6e15,
              energy_j=16000.0, contended=True)


def test_contended_runs_leave_burden_and_energy_fits_with_the_count_reported(lit_root, tmp_path):
    runs = tmp_path / "runs"
    _contended_runs(runs)
    res, out = _run_pipeline(lit_root, tmp_path, runs)
    fits = pd.read_csv(out / "fits.csv")
    m = fits[(fits["source"] == "measured") & (fits["points"] == "final")
             & (fits["model_form"] == "polynomial")].set_index("compute_measure")
    assert m.loc["network_operations", "n"] == 5  # FLOPs do not depend on load
    assert m.loc["hardware_burden", "n"] == 4
    assert m.loc["hardware_burden_consolidated", "n"] == 4
    assert res.measured.num_contended_excluded == 1 and res.measured.num_contention_unknown == 2
    line = next(x for x in res.summary if "contended" in x)
    assert "1 contended run(s) left out" in line and "2 run(s) have no contention record" in line
    html = (out / "report.html").read_text()
    assert "1 contended run(s) left out" in html
    # J/FLOP: only the four uncontended runs (100 J per 1e12 FLOP each)
    ext = pd.read_csv(out / "extrapolations.csv")
    j = ext[(ext["source"] == "measured") & (ext["compute_measure"] == "network_operations")]
    assert (j["j_per_flop_num_runs"] == 4).all()
    assert j["j_per_flop_run"].iloc[0] == pytest.approx(1e-10)

    groups2, summary2 = _groups(runs, include_contended=True)
    assert len(groups2[0].final["hardware_burden"]) == 5 and summary2.num_contended_excluded == 0


def test_contended_runs_leave_the_burden_frontier(tmp_path):
    write_run(tmp_path, "quiet", scale=1, error=0.4, curve=[(1e12, 1e13, 0.5), (2e12, 2e13, 0.4)])
    write_run(tmp_path, "busy", scale=2, error=0.3, contended=True,
              curve=[(1e12, 1e14, 0.45), (2e12, 2e14, 0.3)])
    (g,), _ = _groups(tmp_path)
    assert list(g.frontier["hardware_burden"]["run_id"]) == ["quiet", "quiet"]
    assert "busy" in set(g.frontier["network_operations"]["run_id"])


def test_include_contended_is_a_typed_option():
    from hydra.errors import ConfigCompositionException

    assert _compose([]).fit.include_contended is False
    with pytest.raises(ConfigCompositionException):
        _compose(["fit.include_contended=maybe"])


# --- J/FLOP labels --------------------------------------------------------------------------------

def test_energy_kind_never_calls_an_estimate_a_measurement():
    assert energy_kind({"cpu": "codecarbon_estimate", "gpu": "none", "ram": "codecarbon_estimate"}) == "estimate"
    assert energy_kind({"cpu": "rapl", "gpu": "nvml_counter", "ram": "none"}) == "measured"
    assert energy_kind({"cpu": "codecarbon_estimate", "gpu": "nvml_counter", "ram": "none"}) == "partly estimated"
    assert energy_kind({"cpu": None, "gpu": None, "ram": None}) == "method not recorded"


def test_j_per_flop_is_labelled_estimate_per_device(lit_root, tmp_path):
    runs = tmp_path / "runs"
    seven_runs(runs)
    # the same configuration on a GPU with counters: never pooled with the CPU estimate
    write_run(runs, "gpu", scale=1, error=0.41, train_flops=1e12, energy_j=1.0,
              device_name="NVIDIA H100", device_type="cuda", energy_cpu_method="rapl",
              energy_gpu_method="nvml_counter", energy_ram_method="none")
    res, out = _run_pipeline(lit_root, tmp_path, runs)
    ext = pd.read_csv(out / "extrapolations.csv")
    assert "j_per_flop_measured" not in ext.columns and "co2_kg_measured" not in ext.columns
    lit = ext[(ext["source"] == "literature") & (ext["benchmark"] == "imagenet")
              & (ext["compute_measure"] == "network_operations") & (ext["target"] == "0.01")
              & (ext["model_form"] == "polynomial")]
    assert len(lit) == 2  # one row per device
    by_kind = dict(zip(lit["j_per_flop_kind"], lit["j_per_flop_basis"]))
    assert set(by_kind) == {"estimate", "measured"}
    assert "Intel Xeon" in by_kind["estimate"] and "cpu=codecarbon_estimate" in by_kind["estimate"]
    assert "NVIDIA H100" in by_kind["measured"] and "gpu=nvml_counter" in by_kind["measured"]
    assert lit["compute_flops"].nunique() == 1  # same compute, two J/FLOP bases
    html = (out / "report.html").read_text()
    assert "estimated (codecarbon TDP model)" in html
    assert "do not transfer to accelerator-era compute" in html


def test_energy_per_flop_groups_by_device_and_method():
    runs = pd.DataFrame({
        "benchmark": ["imagenet"] * 3, "dataset": ["imagenet"] * 3, "eval_set": ["full n=1"] * 3,
        "device_name": ["A", "A", "B"], "device_type": ["cpu"] * 3, "num_devices": [1.0] * 3,
        "energy_cpu_method": ["codecarbon_estimate", "codecarbon_estimate", "rapl"],
        "energy_gpu_method": ["none"] * 3, "energy_ram_method": ["codecarbon_estimate",
                                                                 "codecarbon_estimate", "rapl"],
        "energy_total_j": [10.0, 30.0, 5.0], "network_operations": [1e12, 1e12, 1e12],
        "hardware_burden": [np.nan] * 3,
    })
    e = [x for x in energy_per_flop(runs, by_group=False) if x.measure == "network_operations"]
    assert [(x.device, x.kind, x.n_runs) for x in e] == [("A (cpu)", "estimate", 2),
                                                          ("B (cpu)", "measured", 1)]
    assert e[0].j_per_flop == pytest.approx(2e-11)


# --- loading --------------------------------------------------------------------------------------

def test_interrupted_status_loads_and_is_not_fitted(tmp_path):
    write_run(tmp_path, "a", scale=1)
    write_run(tmp_path, "b", scale=2, status="interrupted")
    runs = load_runs(str(tmp_path))
    assert list(runs["status"]) == ["ok", "interrupted"] and len(fittable(runs)) == 1


def test_old_result_without_new_fields_loads(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps({
        "run_id": "old", "status": "ok", "benchmark": "imagenet", "error": 0.3,
        "train_flops": 1e12, "overrides": ["scale=1"]}))
    r = load_runs(str(tmp_path)).iloc[0]
    assert r["dataset"] == "unknown" and r["proxy"]  # not known to be ImageNet: never with it
    assert r["contended"] is None and r["eval_set"] == "unrecorded n=?"


@pytest.mark.parametrize("key,value,fragment", [
    ("contended", "yes", "'contended'"),
    ("eval_is_subset", 1, "'eval_is_subset'"),
    ("eval_samples", 12.5, "'eval_samples'"),
    ("config", ["a"], "'config'"),
    ("status", "killed", "interrupted"),
])
def test_bad_new_fields_name_file_and_key(tmp_path, key, value, fragment):
    write_run(tmp_path, "a", scale=1, **{key: value})
    with pytest.raises(AnalysisError) as e:
        load_runs(str(tmp_path))
    assert "result.json" in str(e.value) and fragment in str(e.value) and "\n" not in str(e.value)


def test_bad_curve_cell_names_file_line_and_column(tmp_path):
    write_run(tmp_path, "a", scale=1, curve=[(1e12, 1e13, 0.5), (2e12, 2e13, 0.4)])
    p = tmp_path / "a" / "curve.csv"
    p.write_text(p.read_text().replace("0.4,", "lots,"))
    runs = fittable(load_runs(str(tmp_path)))
    with pytest.raises(AnalysisError) as e:
        load_curves(runs)
    msg = str(e.value)
    assert "curve.csv" in msg and "line 3" in msg and "'error'" in msg
