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
