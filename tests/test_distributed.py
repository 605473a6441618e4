"""Several devices in one run: torchrun + DDP on the CPU (gloo, 2 processes), and the pieces that
combine the ranks' counts (harness/distributed.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from harness import distributed
from harness.errors import UserError
from harness.runner import _total_steps, run
from harness.train_loop import shard

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE = ("preset=tiny", "device=cpu", "measure.codecarbon=false", "trainer.progress=false")


def _torchrun(cwd: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m harness ...`` from ``cwd`` (not the source tree)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TMPDIR=str(cwd))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "harness",
           *BASE, f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, fashion_mnist_root):
    """The tiny image-classification run on 2 CPU processes: 640 samples, 64 per device per step."""
    tmp = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(tmp, tmp / "run", f"data.root={fashion_mnist_root}",
                     f"measure.hardware_profiles_dir={tmp / 'hardware'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc


def test_torchrun_gives_one_result_with_the_work_of_both_ranks(ddp_run, tmp_path, compose_harness):
    tmp, proc = ddp_run
    result = json.loads((tmp / "run" / "result.json").read_text())
    assert result["status"] == "ok" and result["num_devices"] == 2
    assert "DistributedDataParallel" in result["distributed_method"]
    # 1 epoch of 640 samples at 64 per device and 2 devices: 5 optimiser steps, 640 samples
    assert result["train_steps"] == 5 and result["train_samples"] == 2 * 5 * 64 == 640
    assert result["epochs"] == pytest.approx(1.0)
    # the same 10 batches trained by one process cost the same FLOPs (fixed image shapes)
    single = run(compose_harness(tmp_path, "measure.codecarbon=false", "trainer.max_steps=10"), tmp_path / "one", [])
    assert single["train_samples"] == 640
    assert result["train_flops"] == pytest.approx(single["train_flops"], rel=1e-9)
    assert result["hardware_burden_flops"] == pytest.approx(2 * result["peak_flops_per_s"] * result["train_time_s"])
    curve = (tmp / "run" / "curve.csv").read_text().splitlines()
    assert len(curve) == 1 + 2 and curve[-1].split(",")[1] == "640"  # header + 2 evaluations, global samples
    # one summary, from rank 0, naming both devices; rank 1's scratch folder is gone
    assert proc.stdout.count("status  ok") == 1 and "2 x " in proc.stdout
    assert not list(tmp.glob("computelimits-rank*"))
    assert not (tmp / "run" / "ranks").exists()  # rank 1 writes nothing beside rank 0's files (codecarbon off)


def test_torchrun_trains_a_workload_whose_loss_bypasses_forward(tmp_path, workload_data_roots):
    """Detection's loss calls the FCOS head and anchors beside ``forward``: DDP wraps the whole loss."""
    proc = _torchrun(tmp_path, tmp_path / "run", "workload=detection", f"data.root={workload_data_roots['detection']}",
                     f"workload.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=3", "trainer.num_evals=1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "ok" and result["num_devices"] == 2 and result["train_steps"] == 3
    assert result["train_samples"] == 2 * 3 * result["batch_size"]
    assert result["train_flops"] > 0 and result["metric_value"] is not None


def test_sweeps_and_bad_variables_are_refused_before_any_work(tmp_path):
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2",
               PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "harness", "-m", "scale=0.125,0.25"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "torchrun runs one job" in proc.stderr
    with pytest.raises(UserError, match="not all integers"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "x"})
    with pytest.raises(UserError, match="inconsistent"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"})
    assert distributed.from_env({}) == distributed.SINGLE and not distributed.SINGLE.enabled


def test_each_rank_takes_every_world_size_th_batch():
    two = [distributed.Dist(r, 2, r, 2) for r in (0, 1)]
    shards = [list(shard(iter(range(10)), d)) for d in two]
    assert shards == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert list(shard(iter(range(3)), distributed.SINGLE)) == [0, 1, 2]
    assert distributed.device_for(two[1], "cpu") == "cpu" and distributed.device_for(distributed.SINGLE, "auto") == "auto"
    with pytest.raises(UserError, match="local rank"):
        distributed.device_for(two[0], "cuda:1")


def test_an_epoch_counts_the_batches_of_every_device():
    class T:
        batch_size, max_steps, epochs = 64, None, 1.0

    assert _total_steps(T, 640) == 10 and _total_steps(T, 640, 2) == 5
    with pytest.raises(UserError, match="x 2 device"):
        _total_steps(T, 100, 2)


class _FakeRanks(distributed.Dist):
    """A rank whose collectives return given per-rank objects (no process group)."""

    def __init__(self, rank: int, world: int, local_world: int, others: list) -> None:
        super().__init__(rank, world, rank % local_world, local_world)
        object.__setattr__(self, "others", others)

    def gather_objects(self, obj):
        return [obj if i == self.rank else o for i, o in enumerate(self.others)]


def test_energy_adds_every_gpu_and_the_host_once_per_node_in_machine_mode():
    ranks = [dict(energy_gpu_j=100.0 * (i + 1), energy_cpu_j=10.0, energy_ram_j=1.0, energy_total_j=0, co2_kg=None,
                  warmup_energy_j=None, energy_above_idle_j=None, local_rank=i % 2) for i in range(4)]
    mine = dict(ranks[0], energy_total_j=111.0, co2_kg=111.0 * 1e-6)
    dist = _FakeRanks(0, 4, 2, ranks)  # 2 nodes x 2 ranks
    machine = distributed.combine_energy(dist, mine, "machine")
    assert machine["energy_gpu_j"] == 1000.0 and machine["energy_gpu_j_per_device"] == [100.0, 200.0, 300.0, 400.0]
    assert machine["energy_cpu_j"] == 20.0 and machine["energy_ram_j"] == 2.0  # local rank 0 of each node
    assert machine["energy_total_j"] == 1022.0 and machine["co2_kg"] == pytest.approx(1022.0 * 1e-6)
    process = distributed.combine_energy(dist, mine, "process")
    assert process["energy_cpu_j"] == 40.0 and process["energy_ram_j"] == 4.0 and process["energy_total_j"] == 1044.0
    unknown = [dict(r, energy_gpu_j=None) for r in ranks]
    assert distributed.combine_energy(_FakeRanks(0, 4, 2, unknown), dict(unknown[0]), "process")["energy_gpu_j"] is None
    assert distributed.combine_energy(distributed.SINGLE, mine, "process") == {}


def test_flop_tallies_of_the_ranks_merge_and_a_resumed_rank_starts_from_zero():
    a = {"macs": {(64, 28): 5.0}, "batches": {"train": {(64, 28): 3}}, "real_positions": {"train": 30},
         "padded_positions": {"train": 40}, "unsupported_ops": {"aten::foo": 1}, "count_time_s": 0.5, "failure": None}
    b = {"macs": {(32, 28): 2.0}, "batches": {"train": {(64, 28): 1, (32, 28): 2}, "warmup": {(64, 28): 1}},
         "real_positions": {"train": 10, "warmup": 5}, "padded_positions": {"train": 10, "warmup": 5},
         "unsupported_ops": {}, "count_time_s": 0.1, "failure": None}
    merged = distributed.merge_flop_states([a, b])
    assert merged["macs"] == {(64, 28): 5.0, (32, 28): 2.0}
    assert Counter(merged["batches"]["train"]) == Counter({(64, 28): 4, (32, 28): 2})
    assert merged["batches"]["warmup"] == {(64, 28): 1}
    assert merged["real_positions"] == {"train": 40, "warmup": 5} and merged["padded_positions"]["train"] == 50
    zero = distributed.zero_tallies(merged)
    assert zero["macs"] == merged["macs"] and zero["batches"] == {} and zero["real_positions"] == {}
    failed = distributed.merge_flop_states([a, dict(b, failure="OOM")])
    assert failed["failure"] == "OOM"


def test_agree_is_true_when_any_flag_is():
    assert distributed.SINGLE.agree(torch.device("cpu"), torch.tensor(True), False, 0) == (True, False, False)


CRASH_ON_RANK_1 = '''
import os, runpy
from harness import train_loop
real = train_loop.TrainLoop._step
def step(self, batch, schedule=True):
    if os.environ["RANK"] == "1" and self.state.steps == 2:
        raise {exc}("planted on rank 1")
    return real(self, batch, schedule)
train_loop.TrainLoop._step = step
runpy.run_module("harness", run_name="__main__", alter_sys=True)
'''


@pytest.mark.parametrize("exc, status", [("RuntimeError", "failed"), ("MemoryError", "oom")])
def test_a_failure_on_another_rank_is_in_the_result(tmp_path, fashion_mnist_root, exc, status):
    """Rank 1 fails mid-training: rank 0 sees only the broken group ("Connection closed by peer"), so
    rank 1 leaves its own outcome in ranks/1/failure.json and rank 0's result leads with it."""
    script = tmp_path / "crash.py"
    script.write_text(CRASH_ON_RANK_1.format(exc=exc))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TMPDIR=str(tmp_path))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           *BASE, f"hydra.run.dir={tmp_path / 'run'}", f"data.root={fashion_mnist_root}",
           f"measure.hardware_profiles_dir={tmp_path / 'hardware'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == status, result["failure_reason"]
    assert result["failure_reason"].startswith(f"rank 1 {status}: ") and "planted on rank 1" in result["failure_reason"]
    assert "(rank 0 failed: " in result["failure_reason"]  # what rank 0 saw itself stays


def test_rank_failures_are_read_in_order_and_cleared(tmp_path):
    assert distributed.read_rank_failures(tmp_path, 3, wait_s=0) == []
    distributed.write_rank_failure(tmp_path, 2, "failed", "second")
    distributed.write_rank_failure(tmp_path, 1, "oom", "later")
    found = distributed.read_rank_failures(tmp_path, 3, wait_s=0)
    assert [f["rank"] for f in found] == [2, 1]  # the earliest first
    blamed = distributed.blame("failed", "peer closed", found)
    assert blamed["status"] == "failed"  # the first to fail decides, and it failed
    assert blamed["failure_reason"] == "rank 2 failed: second; rank 1 oom: later (rank 0 failed: peer closed)"
    assert distributed.blame("interrupted", "SIGTERM", [found[1]])["status"] == "interrupted"
    assert distributed.blame("failed", "x", []) == {}
    distributed.clear_rank_failures(tmp_path)
    assert distributed.read_rank_failures(tmp_path, 3, wait_s=0) == []
