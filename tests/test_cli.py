"""``python -m harness`` as a user runs it: bad input, a single run and a two-job sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.train_subset=256", "data.eval_subset=128", "trainer.batch_size=64", "trainer.epochs=1",
    "trainer.num_evals=1", "trainer.timing_warmup_steps=1", "trainer.progress=false",
    "measure.codecarbon=false", "device=cpu",
]


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model=vgg", ["model", "vgg", "resnet"]),  # unknown model: Hydra lists the options
        ("data=mnist", ["data", "mnist", "fashion_mnist"]),  # unknown dataset
        ("scale=0", ["scale=0", "> 0"]),
        ("scale=-0.5", ["scale=-0.5", "> 0"]),
        ("scale=abc", ["scale", "abc"]),  # non-numeric: rejected by the typed config
        ("trainer.epochs=lots", ["epochs", "lots"]),
        ("trainer.lr_max=1", ["lr_max"]),  # a typo: unknown key fails at compose time
        ("device=tpu", ["device", "tpu", "cpu"]),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, fashion_mnist_root, override, expected):
    out = tmp_path / "run"
    proc = harness(*TINY, f"hydra.run.dir={out}", f"data.root={fashion_mnist_root}", override, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for word in expected:
        assert word in proc.stderr, proc.stderr
    assert not (out / "result.json").exists()


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    empty = tmp_path / "nowhere"
    empty.mkdir()
    out = tmp_path / "run"
    proc = harness(f"data.root={empty}", f"hydra.run.dir={out}", *TINY, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(empty) in lines[0] and "apt-get install dataset-fashion-mnist" in lines[0] and "data.root" in lines[0]
    assert not out.exists()


def test_single_run_prints_a_summary_and_writes_its_folder(tmp_path, fashion_mnist_root):
    out = tmp_path / "run"
    proc = harness(f"hydra.run.dir={out}", f"data.root={fashion_mnist_root}", "scale=0.125", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "top1_accuracy" in proc.stdout and "hardware burden" in proc.stdout
    assert {"result.json", "curve.csv", "harness.log", ".hydra"} <= {p.name for p in out.iterdir()}
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["scale"] == 0.125


def test_sweep_of_two_jobs_records_a_failed_job_and_goes_on(tmp_path, fashion_mnist_root):
    sweep = tmp_path / "sweep"
    proc = harness("-m", "scale=0.125,-1", f"hydra.sweep.dir={sweep}", f"data.root={fashion_mnist_root}", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = sorted((json.loads(p.read_text()) for p in sweep.glob("*/result.json")), key=lambda r: r["overrides"][0])
    assert [r["status"] for r in results] == ["failed", "ok"]  # "scale=-1" sorts before "scale=0.125"
    assert "scale=-1" in results[0]["failure_reason"]
    assert results[1]["scale"] == 0.125 and results[1]["metric_value"] is not None


def test_sweep_with_a_static_typo_stops_before_any_job(tmp_path, fashion_mnist_root):
    sweep = tmp_path / "sweep"
    proc = harness("-m", "scale=0.125,abc", f"hydra.sweep.dir={sweep}", f"data.root={fashion_mnist_root}", *TINY, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: scale: Value 'abc' of type 'str' could not be converted to Float"
    assert not sweep.exists()


@pytest.mark.parametrize(
    "command, override, expected",
    [
        ("kernels", "repeats=3", "'repeats' is not a config key; valid keys of the top level: cpu,"),
        ("analysis", "fit.min_points=abc", "fit.min_points: Value 'abc' of type 'str' could not be converted to Integer"),
    ],
)
def test_every_command_reports_bad_overrides_in_one_line(tmp_path, command, override, expected):
    proc = subprocess.run([sys.executable, "-m", command, override, f"out_dir={tmp_path / 'out'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), proc.stderr
    assert list(tmp_path.iterdir()) == []
