"""Tests for analysis/: the paper's published fits reproduced from its CSVs, the pipeline's outputs
with fake measured runs, and clear one-line errors for bad input.

The literature lives outside the repo; tests find it through the ``shared_data`` fixture
(tests/conftest.py, from COMPUTELIMITS_SHARED_DATA; the literature is under ``literature/``). Expected numbers are only the paper's
published ones (analysis.constants.PUBLISHED_POLYNOMIAL, from its notebooks).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.config import register_configs
from analysis.constants import (
    BENCHMARK_SPECS, FLOP_PER_LB_CO2_SPECTRUM, FLOP_PER_USD_SPECTRUM, PUBLISHED_POLYNOMIAL,
)
from analysis.errors import AnalysisError
from analysis.extrapolate import extrapolate, log10_compute_at
from analysis.fits import Fit, fit_one, irls_quantile_batched, k_interval
from analysis.literature import load_thompson, locate, locate_thompson
from analysis.measured import load_runs
from analysis.measures import consolidate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lit_root(shared_data: Path) -> Path:
    return shared_data / "literature"


@pytest.fixture(scope="session")
def literature(lit_root: Path) -> pd.DataFrame:
    frames = []
    for spec in BENCHMARK_SPECS.values():
        frames.append(load_thompson(spec, locate_thompson(spec, str(lit_root), "unused", False)))
    return pd.concat(frames, ignore_index=True)


def _fit(data, bench, measure, form="polynomial", resamples=0, q=0.1):
    return fit_one(data[data["benchmark"] == bench], bench, "literature", measure, form, q, 3,
                   resamples, 0.95, np.random.default_rng(0))


# --- the paper's published numbers -----------------------------------------------------------

def test_imagenet_forward_pass_polynomial_reproduces_paper(literature):
    """The acceptance check: b = -0.0821 (s.e. 0.006), R^2 = 0.606, n = 110."""
    f = _fit(literature, "imagenet", "forward_pass")
    assert f.n == 110
    assert f.b == pytest.approx(-0.0821, abs=5e-5)
    assert f.b_se == pytest.approx(0.006, abs=5e-4)
    assert f.r2 == pytest.approx(0.606, abs=5e-4)
    assert f.k == pytest.approx(1 / 0.0821, rel=1e-3)


@pytest.mark.parametrize("key", sorted(PUBLISHED_POLYNOMIAL), ids=lambda k: "-".join(k))
def test_published_polynomial_fits(literature, key):
    bench, measure = key
    pub = PUBLISHED_POLYNOMIAL[key]
    f = _fit(literature, bench, measure)
    assert f.n == pub["n"]
    assert f.b == pytest.approx(pub["b"], abs=5e-5)
    assert f.b_se == pytest.approx(pub["b_se"], abs=5e-4)
    assert f.r2 == pytest.approx(pub["r2"], abs=5e-4)


def test_consolidated_hardware_burden_matches_published_column(lit_root, literature):
    """Our consolidation reproduces the CSV's own hw_burden_consolidated column (computing_power,
    rounded to 2 significant digits there), row for row."""
    pts, used = consolidate(literature[literature["benchmark"] == "imagenet"], 3)
    assert used["imagenet"].scope == "benchmark" and used["imagenet"].n == 11
    raw = pd.read_csv(lit_root / "thompson2022" / BENCHMARK_SPECS["imagenet"].filename)[3:]
    published = pd.to_numeric(raw["computing_power"], errors="coerce").to_numpy()
    ours = pts["hardware_burden_consolidated"].to_numpy()
    assert np.array_equal(np.isnan(published), np.isnan(ours))
    ok = ~np.isnan(published)
    assert ok.sum() == 102
    np.testing.assert_allclose(ours[ok], published[ok], rtol=0.05)


def test_coco_consolidation_falls_back_to_pooled_fit(literature):
    pts, used = consolidate(literature, 3)
    assert used["coco"].scope == "pooled"  # COCO has no row reporting both measures
    coco = pts[pts["benchmark"] == "coco"]
    assert coco["hardware_burden_consolidated"].notna().sum() == 20


# --- fitting machinery -------------------------------------------------------------------------

def test_batched_quantile_irls_matches_statsmodels():
    from statsmodels.regression.quantile_regression import QuantReg

    rng = np.random.default_rng(3)
    x = rng.uniform(8, 12, 60)
    y = 0.1 - 0.08 * x + rng.standard_t(3, 60) * 0.05
    idx = rng.integers(0, 60, size=(20, 60))
    ours = irls_quantile_batched(x[idx], y[idx], 0.1)
    X = np.column_stack([np.ones(60), x])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.array([QuantReg(y[i], X[i]).fit(q=0.1).params for i in idx])
    np.testing.assert_allclose(ours, ref, atol=1e-8)


def test_k_interval_maps_through_minus_one_over_b():
    assert k_interval(-0.1, -0.05) == pytest.approx((10.0, 20.0))
    lo, hi = k_interval(-0.1, 0.01)
    assert lo == pytest.approx(10.0) and math.isinf(hi)
    assert all(math.isnan(v) for v in k_interval(0.01, 0.02))


def test_bootstrap_interval_brackets_k(literature):
    f = _fit(literature, "imagenet", "forward_pass", resamples=300)
    assert f.k_ci_low < f.k < f.k_ci_high


def test_too_few_points_is_reported_not_raised():
    d = pd.DataFrame({"benchmark": "coco", "error": [0.5, 0.4], "forward_pass": [1e9, 1e10],
                      "year": [2019, 2020]})
    f = fit_one(d, "coco", "measured", "forward_pass", "polynomial", 0.1, 3, 100, 0.95,
                np.random.default_rng(0))
    assert not f.ok and f.n == 2 and "too few points" in f.note


def test_quantile_and_year_forms_on_imagenet(literature):
    fq = _fit(literature, "imagenet", "forward_pass", form="quantile")
    fy = _fit(literature, "imagenet", "forward_pass", form="polynomial_year")
    fo = _fit(literature, "imagenet", "forward_pass")
    assert fq.model_form == "quantile_q0.1" and fq.b < 0 and 0 < fq.r2 < 1
    # the frontier lies below the mean fit across the data
    assert fq.a + fq.b * 10 < fo.a + fo.b * 10
    assert fy.n == 110 and not math.isnan(fy.year_coef)


# --- extrapolation ------------------------------------------------------------------------------

def test_extrapolation_inverts_the_fit_and_uses_spectrum_constants():
    fit = Fit("imagenet", "literature", "hardware_burden", "polynomial", n=10, a=1.0, b=-0.1)
    lc, _ = log10_compute_at(fit, 0.05)
    assert 1.0 - 0.1 * lc == pytest.approx(math.log10(0.05))
    ext = extrapolate([fit], {fit.group: 0.09}, {"imagenet": [0.05]}, [], 475.0, 0.13)
    row = ext[ext["target"] == "0.05"].iloc[0]
    c = 10 ** lc
    assert row["co2_lb_spectrum"] == pytest.approx(c / FLOP_PER_LB_CO2_SPECTRUM, rel=1e-9)
    assert row["cost_usd_spectrum"] == pytest.approx(c / FLOP_PER_USD_SPECTRUM, rel=1e-9)
    assert set(ext["target"]) == {"best_observed", "0.05"}


# --- literature files ------------------------------------------------------------------------

def _corrupt_copy(lit_root: Path, tmp_path: Path, line: int, column: str, value: str) -> Path:
    """A corrupted ImageNet CSV in tmp_path (a runtime copy, never in the repo)."""
    src = lit_root / "thompson2022" / BENCHMARK_SPECS["imagenet"].filename
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    df.loc[line - 2, column] = value  # file line 1 is the header, so line L is row L - 2
    root = tmp_path / "lit"
    (root / "thompson2022").mkdir(parents=True)
    df.to_csv(root / "thompson2022" / src.name, index=False)
    return root


def test_bad_cell_names_file_line_and_column(lit_root, tmp_path):
    root = _corrupt_copy(lit_root, tmp_path, line=9, column="flops", value="lots")
    spec = BENCHMARK_SPECS["imagenet"]
    with pytest.raises(AnalysisError) as e:
        load_thompson(spec, locate_thompson(spec, str(root), "unused", False))
    msg = str(e.value)
    assert spec.filename in msg and "line 9" in msg and "'flops'" in msg and "lots" in msg
    assert "\n" not in msg


def test_missing_csv_names_the_file(tmp_path):
    spec = BENCHMARK_SPECS["coco"]
    with pytest.raises(AnalysisError, match=spec.filename):
        locate_thompson(spec, str(tmp_path), "unused", False)


def test_offline_without_cache_names_the_options(tmp_path):
    with pytest.raises(AnalysisError) as e:
        locate_thompson(BENCHMARK_SPECS["imagenet"], None, str(tmp_path / "cache"), False)
    assert "literature.root" in str(e.value) and "literature.download=true" in str(e.value)


class _FakeResponse:
    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._data[self._pos:self._pos + (n if n >= 0 else len(self._data))]
        self._pos += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_sha256_and_caches(lit_root, tmp_path, monkeypatch):
    spec = BENCHMARK_SPECS["squad1.1"]
    real = (lit_root / "thompson2022" / spec.filename).read_bytes()
    cache = tmp_path / "cache"
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: _FakeResponse(b"tampered"))
    with pytest.raises(AnalysisError, match="sha256"):
        locate_thompson(spec, None, str(cache), True)
    assert not any(cache.rglob("*.csv"))
    seen = []
    monkeypatch.setattr("urllib.request.urlopen",
                        lambda url, timeout: seen.append(url) or _FakeResponse(real))
    src = locate_thompson(spec, None, str(cache), True)
    assert src.origin == "download" and src.matches_pin and "62f1e4d2" in seen[0]
    again = locate_thompson(spec, None, str(cache), False)  # now offline from the cache
    assert again.origin == "cache"


# --- measured runs -------------------------------------------------------------------------------

def _write_run(root: Path, name: str, **fields) -> None:
    base = {"run_id": name, "started_at": "2026-11-25T10:00:00+00:00", "status": "ok",
            "benchmark": "imagenet", "dataset": "imagenet", "eval_samples": 50000,
            "eval_is_subset": False, "model": "resnet", "error": 0.2,
            "fwd_flops_per_sample": 1e8, "train_flops": 1e14, "hardware_burden_flops": 1e15,
            "energy_total_j": 5e3, "train_time_s": 10.0}
    base.update(fields)
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "result.json").write_text(json.dumps(base))


def _fake_runs(root: Path) -> None:
    for i, (scale, err) in enumerate([(1, 0.30), (2, 0.24), (4, 0.20), (8, 0.17)]):
        _write_run(root, f"r{i}", scale=scale, overrides=[f"scale={scale}"], error=err,
                   fwd_flops_per_sample=1e7 * scale,
                   train_flops=3e13 * scale, hardware_burden_flops=(1e15 * scale) if i else None,
                   energy_total_j=1e3 * scale)
    _write_run(root, "oom", status="oom", error=None)


def test_bad_result_json_names_file_and_key(tmp_path):
    _write_run(tmp_path, "a", benchmark="imagenet21k")
    with pytest.raises(AnalysisError) as e:
        load_runs(str(tmp_path))
    assert "result.json" in str(e.value) and "'benchmark'" in str(e.value) and "coco" in str(e.value)
    (tmp_path / "a" / "result.json").write_text("{not json")
    with pytest.raises(AnalysisError, match="not valid JSON"):
        load_runs(str(tmp_path))


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf" / "analysis"), version_base="1.3"):
        return compose(config_name="analysis", overrides=overrides)


def test_config_rejects_unknown_keys_and_wrong_types():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        _compose(["fit.quantil=0.2"])
    with pytest.raises(ConfigCompositionException):
        _compose(["fit.min_points=three"])


def test_pipeline_with_measured_runs(lit_root, tmp_path):
    from analysis.pipeline import run

    runs = tmp_path / "results"
    _fake_runs(runs)
    out = tmp_path / "out"
    cfg = _compose([f"literature.root={lit_root}", f"results.root={runs}", f"out_dir={out}",
                    f"cache_dir={tmp_path / 'cache'}", "within_family.enabled=false",
                    "fit.bootstrap_resamples=50"])
    res = run(cfg)
    fits = pd.read_csv(out / "fits.csv")
    assert list(fits.columns[:15]) == ["benchmark", "dataset", "eval_set", "source", "points",
                                       "proxy", "compute_measure", "model_form", "a", "b", "b_se",
                                       "r2", "n", "num_runs", "k"]
    m = fits[(fits["source"] == "measured") & (fits["model_form"] == "polynomial")
             & (fits["points"] == "final")]
    assert set(m["compute_measure"]) == {"forward_pass", "network_operations", "hardware_burden",
                                         "hardware_burden_consolidated"}
    fp = m[m["compute_measure"] == "forward_pass"].iloc[0]
    assert fp["n"] == 4 and fp["b"] < 0
    assert m[m["compute_measure"] == "hardware_burden"].iloc[0]["n"] == 3
    assert m[m["compute_measure"] == "hardware_burden_consolidated"].iloc[0]["n"] == 4
    lit = fits[(fits["source"] == "literature") & (fits["benchmark"] == "imagenet")
               & (fits["compute_measure"] == "forward_pass") & (fits["model_form"] == "polynomial")]
    assert lit.iloc[0]["b"] == pytest.approx(-0.0821, abs=5e-5)
    # thin benchmarks are reported, not crashed on
    thin = fits[(fits["benchmark"] == "squad1.1") & (fits["compute_measure"] == "forward_pass")]
    assert thin["note"].str.contains("too few points").all()
    # measured runs are on the ImageNet figure (SVG keeps text as text)
    svg = (out / "figures" / "imagenet.svg").read_text()
    assert "This project, measured on imagenet, eval full n=50000 (n=4 configurations, 4 runs)" in svg
    assert (out / "figures" / "imagenet.png").stat().st_size > 10_000
    ext = pd.read_csv(out / "extrapolations.csv")
    assert {"measured", "literature"} <= set(ext["source"])
    assert ext["co2_kg_run"].notna().any()  # the runs' J/FLOP conversion happened
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src='http" not in html and 'src="http' not in html
    assert res.summary and any("measured" in line for line in res.summary)


def test_bad_input_writes_nothing_and_fails_with_one_line(lit_root, tmp_path):
    """Through the CLI: exit code 2, one line on stderr naming file and row, no outputs."""
    root = _corrupt_copy(lit_root, tmp_path, line=12, column="(TOP 1 score)", value="high")
    for spec in BENCHMARK_SPECS.values():
        if spec.name != "imagenet":
            (root / "thompson2022" / spec.filename).symlink_to(lit_root / "thompson2022" / spec.filename)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "analysis", f"literature.root={root}",
                           "results.root=null", f"out_dir={out}", "within_family.enabled=false"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert BENCHMARK_SPECS["imagenet"].filename in lines[0] and "line 12" in lines[0]
    assert not out.exists()


def test_within_family_counts_resnet18_in_macs():
    """fvcore on torchvision's ResNet-18: MACs agree with torchvision's own _ops (also MACs);
    fwd_flops is twice that."""
    pytest.importorskip("fvcore")
    from analysis.within_family import count_models

    rec = count_models(["resnet18"], "IMAGENET1K_V1")["resnet18"]
    assert rec["resolution_px"] == 224 and rec["acc1_pct"] == pytest.approx(69.758)
    assert rec["fvcore_macs"] == pytest.approx(rec["torchvision_ops_gmacs"] * 1e9, rel=0.01)
    with pytest.raises(ValueError, match="unknown torchvision model"):
        count_models(["resnet19"], "IMAGENET1K_V1")


def test_locate_prefers_root_then_cache(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.csv").write_text("x\n")
    src = locate("sub", "f.csv", "http://unused", "0" * 64, "f", str(tmp_path), "c", False)
    assert src.origin == "literature.root" and not src.matches_pin


def test_missing_results_root_means_no_runs(tmp_path):
    runs = load_runs(str(tmp_path / "nothing-here"))
    assert runs.empty and "does not exist" in runs.attrs["note"]
