"""A run's lifecycle (issue 7): one window for every measure, warm-up on its own, short runs with every
schedule, failures before training recorded, and SIGTERM/SIGINT ending a run cleanly."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.optim import MIN_ONECYCLE_STEPS, build_optimizer, onecycle_pct_start
from harness.runner import run
from harness.stop import exit_code

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = ("measure.codecarbon=false", "measure.count_flops=false")


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
@pytest.mark.parametrize("total_steps", [1, 2, 3, 4, 5, 10, 20])
def test_every_schedule_runs_any_number_of_steps(schedule, total_steps):
    from types import SimpleNamespace

    t = SimpleNamespace(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule=schedule, warmup_fraction=0.2)
    model = torch.nn.Linear(2, 1)
    opt, sched = build_optimizer(t, model, total_steps)
    lrs = []  # the learning rate each step used
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(lr > 0 and lr == lr for lr in lrs)
    if schedule == "onecycle" and total_steps >= MIN_ONECYCLE_STEPS:
        peak = lrs.index(max(lrs))
        assert 0 < peak < total_steps - 1 and max(lrs) == pytest.approx(0.1)  # a ramp up and an annealing phase


def test_onecycle_fraction_is_unchanged_for_long_runs_and_fixed_for_short_ones():
    assert onecycle_pct_start(0.2, 234) == 0.2  # the default run keeps its schedule
    assert onecycle_pct_start(0.2, 5) == pytest.approx(0.4)  # 0.2 x 5 = 1 divided by zero in OneCycleLR
    assert onecycle_pct_start(0.2, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        onecycle_pct_start(0.2, 2)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_short_runs_work_end_to_end(tmp_path, compose_harness, steps):
    cfg = compose_harness(tmp_path, *QUICK, f"trainer.max_steps={steps}", "trainer.timing_warmup_steps=5")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "ok", r["failure_reason"]
    assert r["train_steps"] == steps and r["warmup_steps"] == 5


# ---------------------------------------------------------------- one window
def test_every_training_measure_covers_the_same_steps(tmp_path, compose_harness):
    cfg = compose_harness(tmp_path, "trainer.timing_warmup_steps=3")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "ok"
    fwd = r["fwd_flops_per_sample"]
    assert r["train_steps"] == 10 and r["train_samples"] == 640  # every training step is in the window
    assert r["train_flops"] == pytest.approx(3 * fwd * r["train_samples"])
    assert r["achieved_flops_per_s"] == pytest.approx(r["train_flops"] / r["train_time_s"])
    if r["peak_flops_per_s"] is not None:
        assert r["hardware_burden_flops"] == pytest.approx(r["peak_flops_per_s"] * r["train_time_s"])
    # warm-up: its own steps, samples, FLOPs, time and energy, none of them inside the training figures
    assert (r["warmup_steps"], r["warmup_samples"]) == (3, 3 * 64)
    assert r["warmup_flops"] == pytest.approx(3 * fwd * 3 * 64)
    assert r["warmup_time_s"] > 0 and r["warmup_energy_j"] > 0
    assert r["warmup_method"] and "restored" in r["warmup_method"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "curve.csv")))
    last = rows[-1]
    assert float(last["train_flops"]) == pytest.approx(r["train_flops"])
    assert float(last["train_time_s"]) == pytest.approx(r["train_time_s"])
    assert float(last["energy_total_j"]) == pytest.approx(r["energy_total_j"])
    assert last["window"] == r["curve_window"] and "warm-up" in last["window"]
    if r["peak_flops_per_s"] is not None:
        assert float(last["hardware_burden_flops"]) == pytest.approx(r["hardware_burden_flops"])


def test_warm_up_changes_nothing_that_training_sees(tmp_path, compose_harness):
    """The warm-up steps run on a snapshot that is restored: same data order, weights and RNG."""
    results = []
    for warm in (0, 3):
        cfg = compose_harness(tmp_path, *QUICK, f"trainer.timing_warmup_steps={warm}", "trainer.num_evals=1")
        results.append(run(cfg, tmp_path / f"w{warm}", []))
    cold, warm = results
    assert cold["warmup_steps"] == 0 and cold["warmup_time_s"] is None and cold["warmup_flops"] is None
    assert warm["warmup_steps"] == 3
    assert warm["metric_value"] == cold["metric_value"]
    assert warm["train_samples"] == cold["train_samples"]


# ---------------------------------------------------------------- conditions
def test_contention_and_threads_are_recorded(tmp_path, compose_harness):
    cfg = compose_harness(tmp_path, *QUICK, "trainer.num_evals=1")
    r = run(cfg, tmp_path / "out", [])
    assert r["num_threads"] == torch.get_num_threads()
    assert r["cpu_affinity"] == sorted(os.sched_getaffinity(0))
    assert r["host_load_avg_start"] is not None and r["host_load_avg_end"] is not None
    assert 0 < r["process_cpu_share"] <= 1.5
    assert r["contended"] in (True, False)
    assert (r["contention_reason"] is not None) == r["contended"]


def test_a_busy_host_marks_the_run_contended(tmp_path, compose_harness, monkeypatch, caplog):
    from common import host

    real = host.conditions

    def busy(delta, num_threads, **kw):
        out = real(delta, num_threads, **kw)
        out.update(host_other_cpu_share=0.8, contended=True, contention_reason="other processes used 80% of the CPUs")
        return out

    monkeypatch.setattr(host, "conditions", busy)
    cfg = compose_harness(tmp_path, *QUICK, "trainer.num_evals=1")
    with caplog.at_level("WARNING"):
        r = run(cfg, tmp_path / "out", [])
    assert r["contended"] is True and "80%" in r["contention_reason"]
    assert "contended" in caplog.text


# ---------------------------------------------------------------- failures before training
@pytest.mark.parametrize("exc, status", [
    (RuntimeError("boom while building"), "failed"),
    (MemoryError(), "oom"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                  "you tried to allocate 99999999999 bytes"), "oom"),
])
def test_a_failure_before_training_still_writes_result_json(tmp_path, compose_harness, monkeypatch, exc, status):
    from harness.workloads.image_classification import ImageClassification

    def broken(self, data):
        raise exc

    monkeypatch.setattr(ImageClassification, "build_model", broken)
    cfg = compose_harness(tmp_path, *QUICK)
    r = run(cfg, tmp_path / "out", [])
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert on_disk["status"] == r["status"] == status
    assert on_disk["failure_reason"] and on_disk["dataset"] == "fashion_mnist"
    assert on_disk["train_samples"] is None and on_disk["energy_total_j"] is None  # unknown, not 0
    assert exit_code(r) == 1


# ---------------------------------------------------------------- signals
def test_sigterm_in_process_finishes_the_step_and_records_interrupted(tmp_path, compose_harness, monkeypatch):
    from harness.workloads.image_classification import ImageClassification

    real_loss = ImageClassification.loss
    calls = {"n": 0}

    def loss_then_sigterm(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 2 + 4:  # the 2 warm-up steps, then 4 training steps
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(self, model, batch)

    monkeypatch.setattr(ImageClassification, "loss", loss_then_sigterm)
    cfg = compose_harness(tmp_path, "measure.count_flops=false")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "interrupted" and "SIGTERM" in r["failure_reason"]
    assert r["stop_signal"] == signal.SIGTERM and exit_code(r) == 128 + signal.SIGTERM
    assert r["train_steps"] == 4 and r["train_samples"] == 4 * 64  # the step in flight was finished
    assert r["train_time_s"] > 0 and r["energy_total_j"] is not None  # partial measures are kept
    assert r["metric_value"] is None and r["error"] is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def _wait_for(path: Path, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_command_stopped_by_a_signal_writes_interrupted_and_exits_128_plus_signal(tmp_path, fashion_mnist_root, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "scale=0.125", "device=cpu", f"data.root={fashion_mnist_root}",
           "data.train_subset=6400", "data.eval_subset=200", "trainer.batch_size=64", "trainer.epochs=20",
           "trainer.num_evals=200", "trainer.progress=false", "measure.codecarbon=false",
           f"measure.hardware_profiles_dir={tmp_path / 'hw'}", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(out / "curve.csv", 120), "training never reached its first evaluation"
        sent = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, stderr[-2000:]
    assert took < 30
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "interrupted" and r["train_samples"] > 0 and r["stop_signal"] == sig
    assert "Traceback" not in stderr
    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert rows and int(rows[-1]["train_samples"]) <= r["train_samples"]
