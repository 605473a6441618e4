"""Time outside training: start-up (to the first training step) and evaluation throughput."""
from __future__ import annotations

import pytest

from harness.runner import run


def test_startup_and_eval_throughput_are_recorded(tmp_path, compose_harness):
    cfg = compose_harness(tmp_path, "measure.codecarbon=false")
    run(cfg, tmp_path / "a", [])  # whatever ran before in this process, the next run is not the first
    r = run(cfg, tmp_path / "b", [])
    assert r["startup_method"].startswith("run() start")
    # start-up ends where training starts: inside the wall time, and before training and evaluation
    assert 0 < r["startup_time_s"] < r["wall_time_s"] - r["train_time_s"] - r["eval_time_s"] + 1e-6
    assert r["eval_samples_per_s"] == pytest.approx(r["eval_samples"] * r["num_evals"] / r["eval_time_s"])


def test_startup_phases_say_where_the_startup_went(tmp_path, compose_harness):
    from harness.summary import format_summary

    cfg = compose_harness(tmp_path, "measure.codecarbon=false")
    r = run(cfg, tmp_path / "c", [])
    phases = r["startup_phases_s"]
    # not the process's first run: start-up counts from run(), so there is no imports phase
    assert list(phases) == ["setup", "data", "model", "flop_counting", "meters", "warmup"]
    assert all(s >= 0 for s in phases.values())
    assert sum(phases.values()) == pytest.approx(r["startup_time_s"], abs=1e-6)
    assert "start-up  setup " in format_summary(r, str(tmp_path / "c"))


def test_the_summary_says_what_each_mfu_is_measured_against():
    from harness.summary import _achieved

    cpu = {"achieved_flops_per_s": 1.62e11, "mfu_theoretical": 0.974, "mfu_measured": None, "device_type": "cpu",
           "peak_source": "derived: 2 cores x 2.60 GHz x 32 FP32 FLOP/cycle",
           "measured_peak_note": "no hardware profile for 'AMD EPYC' with 2 threads in results/hardware"}
    text = _achieved(cpu)
    assert "MFU theoretical 97.4% (of a nominal-clock peak that boost clocks pass)" in text
    assert text.endswith("measured n/a (no usable hardware profile: run python -m kernels)")
    gpu = dict(cpu, device_type="cuda", peak_source="NVIDIA H100 datasheet", mfu_theoretical=0.039, mfu_measured=0.05)
    assert _achieved(gpu).endswith("MFU theoretical 3.9%, measured 5.0%")
