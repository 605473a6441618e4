"""What does measuring cost? The harness's timed training step, every meter on, against a bare loop.

For each built-in workload, :mod:`harness.overhead` trains the same model on the same batches with
the same optimiser twice per round: once through :class:`harness.train_loop.TrainLoop` with the
runner's meters and FLOP ledger (its seconds are what ``train_time_s`` reports), once in a plain
``loss.backward(); opt.step()`` loop. Rounds alternate in one process; the figure is the ratio of
the median seconds per step, harness / bare, never an absolute time.

The project runs pytest with ``--benchmark-disable``: then each workload runs at ``preset=tiny``
for a few steps, and the test checks that both sides trained the same thing (same samples, the same
loss on the first training batch from every round) and that the ratio is a finite number. With
``--benchmark-enable`` each workload runs at its default (the README's table) and the ratio must
be at most 1.03:

    python -m pytest tests/test_bench_overhead.py -m benchmark --benchmark-enable -s

(``python -m harness.overhead`` measures the same thing and prints the Markdown table.)
"""
from __future__ import annotations

import math

import pytest

from harness import overhead
from harness.measure.batch_flops import BatchFlops

WORKLOADS = ("image_classification", "ner", "translation", "detection", "qa")
#: --benchmark-disable (CI): steps per round and timed rounds per side, at preset=tiny
CI_STEPS, CI_ROUNDS = 3, 1
#: test_overhead_in_the_timed_path_is_caught: seconds added to every training batch's FLOP accounting;
#: 3 s, because beside a detection run and the test suite the tiny steps took up to 3 s and hid 1 s
INJECTED_DELAY_S = 3.0


def _overrides(name: str, roots: dict, tmp_path, *extra: str) -> list[str]:
    """Workload ``name`` on the CPU, its data where the tests find it; caches and profiles under tmp_path."""
    out = [f"workload={name}", "device=cpu", f"data.root={roots[name]}",
           f"measure.hardware_profiles_dir={tmp_path / 'hardware'}"]
    if name in ("translation", "detection", "qa"):  # the workloads that cache derived data
        out.append(f"workload.cache_dir={tmp_path / 'cache'}")
    return [*out, *extra]


def _check_same_training(result: overhead.Comparison, batch_size: int) -> None:
    rounds = result.harness + result.bare
    assert {r.steps for r in rounds} == {result.num_steps}
    # every batch of these workloads holds trainer.batch_size samples (ragged ends are dropped)
    assert {r.samples for r in rounds} == {result.num_steps * batch_size}
    # from the same weights and RNG state, the same batches and optimiser give the same model: one loss
    losses = {r.probe_loss for r in rounds}
    assert len(losses) == 1 and math.isfinite(losses.pop()), [(r.side, r.probe_loss) for r in rounds]


@pytest.mark.benchmark(group="overhead")
@pytest.mark.parametrize("name", WORKLOADS)
def test_harness_step_overhead(benchmark, name, workload_data_roots, tmp_path) -> None:
    full = not benchmark.disabled
    if full:
        overrides, steps, rounds = _overrides(name, workload_data_roots, tmp_path), \
            overhead.DEFAULT_STEPS, overhead.DEFAULT_ROUNDS
    else:
        overrides, steps, rounds = _overrides(name, workload_data_roots, tmp_path, "preset=tiny"), CI_STEPS, CI_ROUNDS
    result = benchmark.pedantic(overhead.measure, args=(overrides, tmp_path / "run", steps, rounds),
                                rounds=1, iterations=1)
    summary = result.summary()
    benchmark.extra_info.update(summary)
    print(f"\n{name}: harness {summary['harness_ms_per_step']:.1f} ms/step, bare {summary['bare_ms_per_step']:.1f} "
          f"ms/step, ratio {result.ratio:.3f} (best rounds {result.ratio_best:.3f}), {steps} steps x {rounds} rounds")
    _check_same_training(result, overhead.compose(overrides).trainer.batch_size)
    assert math.isfinite(result.ratio) and result.ratio > 0
    if full:
        assert result.ratio <= overhead.TARGET_RATIO, summary


def test_overhead_in_the_timed_path_is_caught(monkeypatch, workload_data_roots, tmp_path) -> None:
    """The comparison is not vacuous: FLOP accounting that costs 1 s per batch inside the training window
    (as counting every shape with fvcore there would) gives a ratio far above the target. The delay is
    large against the tiny steps so that a loaded machine (tiny steps of 0.1 to 3 s seen) cannot hide it."""
    import time

    add = BatchFlops.add

    def slow_add(self, window, batch):
        if window == "train":
            time.sleep(INJECTED_DELAY_S)
        add(self, window, batch)

    monkeypatch.setattr(BatchFlops, "add", slow_add)
    overrides = _overrides("image_classification", workload_data_roots, tmp_path, "preset=tiny")
    result = overhead.measure(overrides, tmp_path / "run", num_steps=2, num_rounds=1)
    _check_same_training(result, overhead.compose(overrides).trainer.batch_size)
    assert result.ratio > overhead.TARGET_RATIO, result.summary()
    assert result.median_s_per_step("harness") >= INJECTED_DELAY_S, result.summary()  # the window holds the delay


def test_markdown_table() -> None:
    row = {"workload": "ner", "harness_ms_per_step": 61.23, "bare_ms_per_step": 60.0, "ratio": 1.0205,
           "ratio_of_medians": 1.0206, "ratio_best": 1.01, "num_steps": 30, "num_rounds": 5}
    assert overhead.markdown_table([row]).splitlines()[-1] == "| ner | 61.2 | 60.0 | 1.020 | 1.021 | 1.010 | 30 x 5 |"


def test_ratio_pairs_each_round() -> None:
    """Each round's harness is compared with its own bare side: when the load changes between rounds
    (here from 4x to 1x), the median of the paired ratios is the true 1.02, where the ratio of the two
    sides' medians mixes rounds of different loads (1.12 here)."""
    def rounds(side, s_per_step):
        return [overhead.Round(side, 10 * s, 10, 80, 1.0) for s in s_per_step]

    result = overhead.Comparison("ner", 10, 4, harness=rounds("harness", [4.08, 4.08, 1.02, 1.5]),
                                 bare=rounds("bare", [4.0, 4.0, 1.0, 1.0]))
    assert result.paired_ratios == pytest.approx([1.02, 1.02, 1.02, 1.5])
    assert result.ratio == pytest.approx(1.02) and result.ratio_of_medians == pytest.approx(2.79 / 2.5)


def test_with_compile_both_sides_run_the_compiled_model(workload_data_roots, tmp_path) -> None:
    """trainer.compile=true: the bare loop compiles the model with the same backend (a plain loop with
    the same settings), and both sides still train the same thing."""
    overrides = _overrides("image_classification", workload_data_roots, tmp_path, "preset=tiny",
                           "trainer.compile=true", "trainer.compile_backend=aot_eager")
    bench = overhead.build_bench(overhead.compose(overrides), tmp_path / "run")
    try:
        assert bench.bare_model is not bench.model and bench.bare_model is bench.bare_model  # compiled once
        assert getattr(bench.bare_model, "_orig_mod", None) is bench.model  # torch.compile of the same module
        result = overhead.compare(bench, num_steps=2, num_rounds=1)
    finally:
        bench.close()
    rounds = result.harness + result.bare
    assert {r.steps for r in rounds} == {2}
    losses = [r.probe_loss for r in rounds]  # compiled kernels round differently: close, not bit-equal
    assert max(losses) - min(losses) < 1e-3 and all(math.isfinite(x) for x in losses)
