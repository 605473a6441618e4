"""Checkpoints: a run stopped by SIGTERM resumes with the same command and ends as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import checkpoint
from harness.errors import UserError
from harness.runner import run

REPO_ROOT = Path(__file__).resolve().parents[1]
#: 640 samples / 64 = 10 steps, evaluations after steps 5 and 10
BASE = ("measure.codecarbon=false",)


def _sigterm_after(monkeypatch, steps: int) -> None:
    """SIGTERM during the training step ``steps`` (after the FLOP probe's step and the 2 warm-up steps)."""
    from harness.workloads.image_classification import ImageClassification

    real_loss = ImageClassification.loss
    calls = {"n": 0}

    def loss_then_sigterm(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 1 + 2 + steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(self, model, batch)

    monkeypatch.setattr(ImageClassification, "loss", loss_then_sigterm)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, compose_harness):
    tmp = tmp_path_factory.mktemp("ref")
    return run(compose_harness(tmp, *BASE), tmp / "out", [])


@pytest.mark.parametrize("stop_at", [3, 7])  # before and after the first evaluation (step 5)
def test_a_stopped_run_resumes_to_the_uninterrupted_result(tmp_path, compose_harness, monkeypatch, reference, stop_at):
    out = tmp_path / "out"
    cfg = compose_harness(tmp_path, *BASE, "trainer.checkpoint_every_s=3600")
    with monkeypatch.context() as m:
        _sigterm_after(m, stop_at)
        first = run(cfg, out, [])
    assert first["status"] == "interrupted" and first["train_steps"] == stop_at
    assert first["checkpoint"] == "checkpoint.pt" and first["num_segments"] == 1
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)  # plain tensors and containers
    assert ckpt["state"]["steps"] == stop_at and ckpt["segment"] == 1
    assert checkpoint.resumable(out)

    second = run(compose_harness(tmp_path, *BASE, "trainer.checkpoint_every_s=3600"), out, [])
    assert second["status"] == "ok" and second["num_segments"] == 2
    for key in ("train_steps", "train_samples", "train_flops", "epochs", "num_evals", "metric_value", "flops_distinct_shapes"):
        assert second[key] == reference[key], key
    # time sums the segments: more than this segment's own training
    assert second["train_time_s"] > ckpt["totals"]["train_time_s"] > 0
    assert json.loads((out / "segments" / "1" / "result.json").read_text())["status"] == "interrupted"
    assert not (out / "checkpoint.pt").exists()  # finished: nothing left to resume
    rows = (out / "curve.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # both evaluations, the one before the stop kept


def test_periodic_checkpoints_change_nothing_measured(tmp_path, compose_harness, reference):
    r = run(compose_harness(tmp_path, *BASE, "trainer.checkpoint_every_s=0.000001"), tmp_path / "out", [])
    assert r["status"] == "ok" and r["num_segments"] == 1
    for key in ("train_steps", "train_samples", "train_flops", "metric_value"):
        assert r[key] == reference[key], key


def test_a_checkpoint_of_another_config_is_refused(tmp_path, compose_harness, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _sigterm_after(m, 2)
        run(compose_harness(tmp_path, *BASE, "trainer.checkpoint_every_s=3600"), out, [])
    with pytest.raises(UserError, match="another config"):
        run(compose_harness(tmp_path, *BASE, "trainer.checkpoint_every_s=3600", "trainer.lr=0.5"), out, [])


def test_bad_interval_is_refused(tmp_path, compose_harness):
    with pytest.raises(UserError, match="checkpoint_every_s"):
        run(compose_harness(tmp_path, *BASE, "trainer.checkpoint_every_s=0"), tmp_path / "out", [])


def test_the_command_resumes_in_the_same_folder(tmp_path, fashion_mnist_root):
    """SIGUSR1 to the process (what SLURM's --signal=USR1@s sends), then the same command."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "scale=0.125", "device=cpu", f"data.root={fashion_mnist_root}",
           "data.train_subset=1280", "data.eval_subset=100", "trainer.batch_size=64", "trainer.epochs=2",
           "trainer.num_evals=8", "trainer.progress=false", "measure.codecarbon=false",
           "trainer.checkpoint_every_s=3600", f"measure.hardware_profiles_dir={tmp_path / 'hw'}", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = 120.0
        import time

        end = time.monotonic() + deadline
        while not (out / "curve.csv").exists() and time.monotonic() < end:
            time.sleep(0.2)
        proc.send_signal(signal.SIGUSR1)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGUSR1, stderr[-2000:]
    assert (out / "checkpoint.pt").is_file()
    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "ok" and r["num_segments"] == 2 and r["train_steps"] == 2 * 1280 // 64
