"""trainer.compile: training steps through torch.compile, FLOPs counted on the eager model."""
from __future__ import annotations

import pytest

from harness.errors import UserError
from harness.runner import run

BASE = ("measure.codecarbon=false", "trainer.max_steps=4", "trainer.num_evals=1")


def test_compiled_training_counts_the_same_flops_and_trains(tmp_path, compose_harness):
    eager = run(compose_harness(tmp_path, *BASE), tmp_path / "eager", [])
    # aot_eager: dynamo's graph capture and AOT autograd, as inductor uses them, without C++ code
    # generation (minutes on a 2-core CPU); the README reports an inductor run
    compiled = run(compose_harness(tmp_path, *BASE, "trainer.compile=true", "trainer.compile_backend=aot_eager"),
                   tmp_path / "compiled", [])
    assert eager["status"] == compiled["status"] == "ok"
    assert compiled["config"]["trainer"]["compile"] is True
    for key in ("train_flops", "train_samples", "train_steps", "fwd_flops_per_sample", "warmup_flops"):
        assert compiled[key] == eager[key], key
    assert compiled["train_flops"] > 0
    # same parameters, same batches, same maths: the losses agree to float rounding, so the metric does too
    assert compiled["metric_value"] == pytest.approx(eager["metric_value"], abs=0.02)


def test_an_unknown_backend_is_refused_before_any_work(tmp_path, compose_harness):
    with pytest.raises(UserError, match="compile_backend='nope'.*valid: .*inductor"):
        run(compose_harness(tmp_path, "trainer.compile=true", "trainer.compile_backend=nope"), tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def test_prefetched_batches_train_the_same_run(tmp_path, compose_harness, monkeypatch):
    """trainer.prefetch_batches=2 (a background thread builds the batches; the default on CUDA) trains
    the same batches in the same order: same samples, FLOPs and metric as building them in the loop."""
    from harness import train_loop

    made = []
    real = train_loop.Prefetcher.__init__

    def spy(self, items, depth):
        made.append(depth)
        real(self, items, depth)

    monkeypatch.setattr(train_loop.Prefetcher, "__init__", spy)
    plain = run(compose_harness(tmp_path, *BASE), tmp_path / "plain", [])
    assert made == []  # auto on the CPU: off
    ahead = run(compose_harness(tmp_path, *BASE, "trainer.prefetch_batches=2"), tmp_path / "ahead", [])
    assert made == [2]
    for key in ("train_flops", "train_samples", "train_steps", "metric_value"):
        assert ahead[key] == plain[key], key
    with pytest.raises(UserError, match="prefetch_batches=-1"):
        run(compose_harness(tmp_path, "trainer.prefetch_batches=-1"), tmp_path / "bad", [])
    assert not (tmp_path / "bad").exists()  # refused by validate(), before anything is written


def test_the_prefetcher_keeps_order_stops_and_passes_errors_on():
    from harness.train_loop import Prefetcher

    assert list(Prefetcher(iter(range(50)), 3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad batch")

    p = Prefetcher(broken(), 2)
    assert next(p) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(p)
    endless = Prefetcher(iter(int, 1), 2)  # an infinite stream, like batches_forever
    assert next(endless) == 0
    endless.close()
    assert not endless._thread.is_alive()


@pytest.mark.gpu
def test_compiled_training_on_cuda_counts_the_same_flops(tmp_path, compose_harness):
    """inductor on a GPU (Triton kernels): the same FLOPs as the eager run, and it trains."""
    gpu = ("device=cuda", *BASE, "trainer.max_steps=20")
    eager = run(compose_harness(tmp_path, *gpu), tmp_path / "eager", [])
    compiled = run(compose_harness(tmp_path, *gpu, "trainer.compile=true"), tmp_path / "compiled", [])
    assert eager["status"] == compiled["status"] == "ok", (eager.get("error"), compiled.get("error"))
    for key in ("train_flops", "train_samples", "train_steps", "fwd_flops_per_sample", "warmup_flops"):
        assert compiled[key] == eager[key], key
    assert compiled["metric_value"] == pytest.approx(eager["metric_value"], abs=0.05)
