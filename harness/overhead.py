"""What measuring costs: the harness's timed training step, every meter on, against a bare PyTorch loop.

Both sides train the same model (the workload registry builds it once; every round starts from the
same weights and RNG state) on the same batches (the same ``train_batches`` stream, same seed), with
the same optimiser and schedule (:func:`harness.optim.build_optimizer` for ``total_steps = N``) and
the same gradient clipping:

- **harness**: :class:`harness.train_loop.TrainLoop` ``.train()`` as the runner sets it up: meters
  from the runner's ``_build_meters`` (codecarbon's tracker running, the host meter), the FLOP
  ledger from ``_flop_ledger`` (``BatchFlops.add`` on every batch; new shapes counted by fvcore
  between windows, as in a run), the
  tqdm bar as configured (``trainer.progress``), the NaN check, GradScaler and the autocast
  context, the data iterator as the loop uses it. Its time is the growth of
  ``meters.seconds("train")``: exactly what ``train_time_s`` reports (data loading included,
  window edges excluded). Evaluation falls outside that window; it is replaced by a stub here so
  a round costs only its training.
- **bare**: ``for batch in data.train_batches(...)``, in the same autocast context and, with
  ``trainer.compile``, through ``torch.compile`` of the model with the same backend and mode
  (no batch prefetching, no GradScaler): ``loss = total / count``,
  ``zero_grad``, ``loss.backward()``, clipping when configured, ``opt.step()``,
  ``sched.step()``; timed with ``perf_counter`` from before the first batch is fetched to after
  the last step, the device synchronised at both ends.

Rounds alternate (harness, bare, bare, harness, ...: drift cancels) after one untimed round of each
(first-call costs: allocator, oneDNN primitives per new shape, fvcore on new shapes). The ratio is
the median over rounds of harness / bare seconds per step, each round's two sides run back to back
(also reported: the ratio of the two sides' median and of their best rounds).
A ratio, measured side by side in one process, survives a shared machine far better than absolute
times do.

Run it: ``python -m harness.overhead`` (every built-in workload at its default) or
``python -m harness.overhead --workloads ner qa --steps 40 --rounds 15 -- trainer.progress=false``;
the pytest form is ``tests/test_bench_overhead.py`` with ``--benchmark-enable``.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from harness.measure.timer import synchronize
from harness.optim import build_optimizer
from harness.workload import Evaluation

#: The issue's target: the harness's training step costs at most 3% more than a bare loop's.
TARGET_RATIO = 1.03
# Rounds of 20 steps: one round's harness/bare ratio swings by 5 to 17% on the quiet 2-vCPU VM (qa on
# 2026-11-26: 0.884 to 1.172 over 21 rounds), so only the median of many short back-to-back pairs
# resolves a 3% target there: with 11 rounds qa measured 1.032 in one run and 0.997 with 21 rounds
# in the next (the median's standard error is about 1.25 x 0.07 / sqrt(n): 0.026 at 11, 0.019 at 21).
DEFAULT_STEPS = 20
DEFAULT_ROUNDS = 21

METHOD = (
    "harness: TrainLoop.train() with the runner's meters (codecarbon tracker, host meter), FLOP ledger "
    "(BatchFlops.add per batch), progress bar, NaN check; seconds = growth of meters.seconds('train') "
    "(what train_time_s reports). bare: the same model, batches, optimiser, schedule and clipping in a plain "
    "loop (loss.backward(); opt.step()), perf_counter from before the first batch fetch to after the last step. "
    "One untimed round each, then alternating rounds (H B B H ...) from the same weights and RNG state; "
    "ratio = median over rounds of harness / bare seconds per step (each round's pair back to back)"
)


@dataclass
class Bench:
    """One workload built once for both sides."""

    cfg: Any
    workload: Any
    data: Any
    model: torch.nn.Module
    autocast: Any
    device: torch.device
    meters: Any
    flops: Any
    init_state: dict[str, torch.Tensor]
    probe: Any  # the first training batch: the deterministic batch the final loss is taken on
    _bare_model: Optional[torch.nn.Module] = None

    @property
    def bare_model(self) -> torch.nn.Module:
        """What the bare loop's steps call: the model, or with ``trainer.compile`` one
        ``torch.compile`` of it (same backend and mode as the harness; the same parameters), made once."""
        if self._bare_model is None:
            from harness.train_loop import step_model_for

            self._bare_model = step_model_for(self.model, self.cfg.trainer)
        return self._bare_model

    def reset(self) -> None:
        """The weights and RNG state every round starts from."""
        from harness.runner import seed_everything

        self.model.load_state_dict(self.init_state)
        seed_everything(self.cfg.seed)

    def probe_loss(self) -> float:
        """The loss on the first training batch (eval mode, no gradients): the same number from both
        sides means they trained the same thing."""
        self.model.eval()
        with torch.no_grad(), self.autocast:
            total, count = self.workload.loss(self.model, self.probe)
            value = float(total / count)
        self.model.train()
        return value

    def close(self) -> None:
        self.meters.close()


def build_bench(cfg: Any, run_dir: Path) -> Bench:
    """Build the workload, data and model through the registry, and the meters and FLOP ledger as the
    runner does (its own helpers, so the harness side is the harness)."""
    from harness import runner
    from harness.device import resolve_device
    from harness.workload import build_workload

    runner.validate(cfg)
    device = resolve_device(cfg.device)
    autocast = runner.set_precision(cfg.trainer.precision, device)
    workload = build_workload(cfg.workload.name, cfg, device)
    runner.seed_everything(cfg.seed)
    data = workload.build_data()
    model = workload.build_model(data).to(device)
    # The runner's _probe_flops (fvcore and FlopCounterMode on the first batch) only adds that batch's
    # shape to the ledger before training; the untimed first round of compare() settles every shape.
    flops = runner._flop_ledger(cfg, workload, model, autocast)
    run_dir.mkdir(parents=True, exist_ok=True)
    meters = runner._build_meters(cfg, device, run_dir)
    init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    probe = next(iter(data.train_batches(cfg.trainer.batch_size, torch.Generator().manual_seed(cfg.seed))))
    return Bench(cfg, workload, data, model, autocast, device, meters, flops, init_state, probe)


def _make_loop_class():
    from harness.train_loop import TrainLoop

    class _OverheadLoop(TrainLoop):
        """The harness's loop; only its evaluation (outside the ``train`` windows) is a stub."""

        def _evaluate(self) -> Evaluation:
            return Evaluation(metrics={self.workload.metric_name: 0.0})

    return _OverheadLoop


@dataclass
class Round:
    side: str
    seconds: float
    steps: int
    samples: int
    probe_loss: float

    @property
    def s_per_step(self) -> float:
        return self.seconds / self.steps


def harness_round(bench: Bench, num_steps: int) -> Round:
    """``num_steps`` steps of :class:`TrainLoop` with every meter on; seconds as ``train_time_s`` counts them."""
    from harness.stop import StopRequest

    bench.reset()
    loop = _make_loop_class()(
        bench.cfg, bench.workload, bench.data, bench.model, bench.autocast, bench.meters, StopRequest(),
        num_steps, flops=bench.flops, burden_flops_per_s=None, on_curve=lambda rows: None,
        on_files=lambda files: None, wall_start=time.perf_counter(),
    )
    before = bench.meters.seconds("train")
    outcome = loop.train()
    seconds = bench.meters.seconds("train") - before
    if outcome.status != "ok":
        raise RuntimeError(f"harness round ended {outcome.status}: {outcome.failure_reason}")
    return Round("harness", seconds, loop.state.steps, loop.state.samples, bench.probe_loss())


def bare_round(bench: Bench, num_steps: int) -> Round:
    """``num_steps`` steps of a plain PyTorch loop over the same model, batches, optimiser and schedule."""
    bench.reset()
    cfg, t = bench.cfg, bench.cfg.trainer
    model, workload, autocast = bench.model, bench.workload, bench.autocast
    step_model = bench.bare_model
    opt, sched = build_optimizer(t, model, num_steps)
    clip = t.grad_clip_norm
    rng = torch.Generator().manual_seed(cfg.seed)
    model.train()
    steps = samples = 0
    synchronize(bench.device)
    start = time.perf_counter()
    while steps < num_steps:
        for batch in bench.data.train_batches(t.batch_size, rng):
            with autocast:
                total, count = workload.loss(step_model, batch)
                loss = total / count
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            steps += 1
            samples += workload.batch_size_of(batch)
            if steps == num_steps:
                break
    synchronize(bench.device)
    seconds = time.perf_counter() - start
    return Round("bare", seconds, steps, samples, bench.probe_loss())


@dataclass
class Comparison:
    workload: str
    num_steps: int
    num_rounds: int
    harness: list[Round] = field(default_factory=list)
    bare: list[Round] = field(default_factory=list)
    device_name: Optional[str] = None
    settings: dict[str, Any] = field(default_factory=dict)  # precision, compile, prefetch: both sides' settings

    def median_s_per_step(self, side: str) -> float:
        return statistics.median(r.s_per_step for r in getattr(self, side))

    def best_s_per_step(self, side: str) -> float:
        return min(r.s_per_step for r in getattr(self, side))

    @property
    def paired_ratios(self) -> list[float]:
        """Seconds per step harness / bare of each round (its two sides ran back to back)."""
        return [h.s_per_step / b.s_per_step for h, b in zip(self.harness, self.bare)]

    @property
    def ratio(self) -> float:
        """The median over rounds of harness / bare: each pair ran back to back, under the same load,
        so a load that changes between rounds (a shared machine) moves both sides of a pair alike."""
        return statistics.median(self.paired_ratios)

    @property
    def ratio_of_medians(self) -> float:
        return self.median_s_per_step("harness") / self.median_s_per_step("bare")

    @property
    def ratio_best(self) -> float:
        return self.best_s_per_step("harness") / self.best_s_per_step("bare")

    def summary(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "num_steps": self.num_steps, "num_rounds": self.num_rounds,
            "harness_ms_per_step": 1e3 * self.median_s_per_step("harness"),
            "bare_ms_per_step": 1e3 * self.median_s_per_step("bare"),
            "ratio": self.ratio, "ratio_of_medians": self.ratio_of_medians, "ratio_best": self.ratio_best,
            "paired_ratios": self.paired_ratios,
            "harness_rounds_ms_per_step": [1e3 * r.s_per_step for r in self.harness],
            "bare_rounds_ms_per_step": [1e3 * r.s_per_step for r in self.bare],
            "samples_per_round": sorted({r.samples for r in self.harness + self.bare}),
            "probe_losses": sorted({r.probe_loss for r in self.harness + self.bare}),
            "num_threads": torch.get_num_threads(), "device_name": self.device_name, **self.settings,
            "method": METHOD,
        }


def compare(bench: Bench, num_steps: int = DEFAULT_STEPS, num_rounds: int = DEFAULT_ROUNDS,
            sides: Optional[dict[str, Callable[[Bench, int], Round]]] = None) -> Comparison:
    """One untimed round of each side, then ``num_rounds`` timed rounds of each, alternating
    (H B, B H, H B, ...)."""
    sides = sides or {"harness": harness_round, "bare": bare_round}
    from harness.device import device_info

    t = bench.cfg.trainer
    result = Comparison(bench.cfg.workload.name, num_steps, num_rounds,
                        device_name=device_info(bench.device)["device_name"],
                        settings={"precision": t.precision, "compile": bool(t.get("compile")),
                                  "compile_backend": t.compile_backend if t.get("compile") else None,
                                  "prefetch_batches": t.get("prefetch_batches")})
    for name in ("harness", "bare"):  # first-call costs, new shapes counted and compiled
        sides[name](bench, num_steps)
    for i in range(num_rounds):
        for name in (("harness", "bare") if i % 2 == 0 else ("bare", "harness")):
            getattr(result, name).append(sides[name](bench, num_steps))
    return result


def compose(overrides: Sequence[str]) -> Any:
    """The harness config for ``overrides``, through Hydra's compose API (as ``python -m harness``)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from common.hydra_cli import CONF_DIR
    from harness.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def measure(overrides: Sequence[str], run_dir: Path, num_steps: int = DEFAULT_STEPS,
            num_rounds: int = DEFAULT_ROUNDS) -> Comparison:
    """Compose, build and compare one workload; the meters write under ``run_dir``."""
    bench = build_bench(compose(overrides), run_dir)
    try:
        return compare(bench, num_steps, num_rounds)
    finally:
        bench.close()


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| workload | harness ms/step | bare ms/step | ratio (median of rounds) | ratio of medians | "
             "ratio of best rounds | steps x rounds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['harness_ms_per_step']:.1f} | {r['bare_ms_per_step']:.1f} | "
                     f"{r['ratio']:.3f} | {r['ratio_of_medians']:.3f} | {r['ratio_best']:.3f} | "
                     f"{r['num_steps']} x {r['num_rounds']} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from harness.workload import workload_names

    parser = argparse.ArgumentParser(prog="python -m harness.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=None, help="default: every built-in workload")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds per side")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("overrides", nargs="*", help="harness overrides for every workload (data.root=... etc.); "
                        "after -- when --workloads comes first")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        for name in args.workloads or workload_names():
            overrides = [f"workload={name}", "device=cpu", f"measure.hardware_profiles_dir={tmp}/hardware",
                         *args.overrides]
            row = measure(overrides, Path(tmp) / name, args.steps, args.rounds).summary()
            rows.append(row)
            print(f"{name}: harness {row['harness_ms_per_step']:.1f} ms/step, bare {row['bare_ms_per_step']:.1f} "
                  f"ms/step, ratio {row['ratio']:.3f} (of medians {row['ratio_of_medians']:.3f}, best rounds "
                  f"{row['ratio_best']:.3f}); rounds {', '.join(f'{x:.3f}' for x in row['paired_ratios'])}", file=sys.stderr)
            if args.json is not None:  # after every workload: a later failure keeps the earlier figures
                args.json.write_text(json.dumps(rows, indent=2))
    print(markdown_table(rows))
    return 0 if all(math.isfinite(r["ratio"]) and r["ratio"] <= TARGET_RATIO for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
