"""The timed training loop: warm-up on a snapshot, training windows, evaluations, a clean stop.

One window for every measure (DESIGN.md): the ``train`` windows hold every training step and
nothing else, so training FLOPs, time, energy, hardware burden and achieved FLOP/s all cover
the same steps. The timing warm-up (first-call costs: allocator, oneDNN/cuDNN kernel choice)
runs *before* training on a snapshot of the model, optimiser, scheduler and RNG, which is
then restored: it is measured in its own ``warmup`` window and changes nothing that training
sees. Evaluations have their own ``eval`` windows.

The loop keeps its progress in :attr:`TrainLoop.state`, which the runner reads whatever
happens (a failure mid-run still records the samples trained), and returns a
:class:`TrainOutcome`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from harness import distributed
from harness.errors import UserError
from harness.measure.batch_flops import BatchFlops
from harness.measure.meter import Meters
from harness.optim import build_optimizer
from harness.stop import StopRequest
from harness.workload import Evaluation, Workload

log = logging.getLogger(__name__)

NONFINITE_CHECK_EVERY_STEPS = 25  # how often the loss is checked for NaN/inf (each check syncs)
#: What the cumulative columns of curve.csv (and the training fields of result.json) cover.
CURVE_WINDOW = "train steps only (warm-up on a restored snapshot, evaluation excluded)"


def eval_steps(total_steps: int, num_evals: int) -> list[int]:
    """Steps after which to evaluate: evenly spread, the last at the end of training."""
    return sorted({max(1, round(total_steps * (i + 1) / num_evals)) for i in range(num_evals)})


def batches_forever(data: Any, batch_size: int, rng: torch.Generator) -> Iterator[Any]:
    """Training batches, epoch after epoch."""
    while True:
        empty = True
        for batch in data.train_batches(batch_size, rng):
            empty = False
            yield batch
        if empty:
            raise UserError(f"trainer.batch_size={batch_size} is larger than the {data.num_train} training samples")


def shard(batches: Iterator[Any], dist: distributed.Dist) -> Iterator[Any]:
    """This rank's share of a batch stream: every ``world_size``-th batch from its rank on (all
    ranks draw the same seeded stream, so together they train each batch once)."""
    return batches if not dist.enabled else itertools.islice(batches, dist.rank, None, dist.world_size)


class Prefetcher:
    """Draws the next ``depth`` items of ``items`` on a background thread, so that building a batch
    (indexing, padding, the host-to-device copy) overlaps the device's work on the current step.
    The items and their order are the iterator's own; an exception in it is raised by ``next``."""

    def __init__(self, items: Iterator[Any], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(items,), name="batch-prefetch", daemon=True)
        self._thread.start()

    def _fill(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                while not self._stop.is_set():
                    try:
                        self._queue.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer)
            self._queue.put((False, exc))
        else:
            self._queue.put((False, StopIteration()))

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Any:
        ok, item = self._queue.get()
        if not ok:
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.1)


def step_model_for(model: nn.Module, t: Any) -> nn.Module:
    """What training steps call: ``model``, or with ``trainer.compile`` ``torch.compile`` of it with
    ``trainer.compile_backend`` and ``compile_mode`` (the same parameters; FLOPs are counted on the
    eager model)."""
    if not t.get("compile"):
        return model
    return torch.compile(model, backend=t.compile_backend, mode=t.compile_mode)


def prefetch_depth(setting: Optional[int], device: torch.device) -> int:
    """``trainer.prefetch_batches`` (checked >= 0 by the runner's ``validate``); null: 2 on CUDA, 0 elsewhere."""
    if setting is None:
        return 2 if device.type == "cuda" else 0
    return int(setting)


class LossModule(nn.Module):
    """The workload's whole loss as one module, for ``DistributedDataParallel``: DDP synchronises
    the gradients of what runs inside its ``forward``, and some workloads' losses call a model's
    sub-modules beside its ``forward`` (detection's FCOS head and anchors)."""

    def __init__(self, model: nn.Module, workload: Workload) -> None:
        super().__init__()
        self.model = model
        self.workload = workload

    def forward(self, batch: Any) -> tuple[torch.Tensor, Any]:
        return self.workload.loss(self.model, batch)


@dataclass
class TrainState:
    """Progress so far; read by the runner on every path, including failures."""

    steps: int = 0
    samples: int = 0
    warmup_steps: int = 0
    warmup_samples: int = 0
    data_time_s: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)
    eval_flops: Optional[float] = 0.0  # as the workload counted them; None once one evaluation did not
    eval_flops_method: Optional[str] = None


@dataclass
class TrainOutcome:
    """How training ended: ``ok``, ``diverged`` or ``interrupted``, and the last evaluation."""

    status: str
    failure_reason: Optional[str] = None
    metric_value: Optional[float] = None
    error: Optional[float] = None
    metrics: Optional[dict[str, float]] = None  # every metric of the last evaluation
    metric_details: Optional[dict[str, Any]] = None  # how the last evaluation computed them


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="train", disable=not enabled, dynamic_ncols=True, leave=False)


class TrainLoop:
    """Trains ``model`` for ``total_steps`` inside ``meters``' windows.

    Args:
        cfg: The run's config (``trainer``, ``seed``).
        workload: Loss, evaluation and batch sizes.
        data: The workload's data.
        model: On its device.
        autocast: The precision context.
        meters: Windows for time, energy and host conditions.
        stop: Set by SIGTERM/SIGINT; checked after every step.
        total_steps: Optimiser steps to train.
        flops: Tallies every batch (``warmup`` and ``train`` windows) for FLOPs per batch as
            executed; settled between windows, never inside one.
        burden_flops_per_s: num_devices x peak FLOP/s, for the curve's cumulative burden (None
            when the peak is unknown).
        on_curve: Called with the curve after each evaluation (writes curve.csv).
        on_files: Called with each evaluation's files (predictions), to write into the run folder.
        run_dir: Where ``checkpoint.pt`` goes (``trainer.checkpoint_every_s``); None: no checkpoints.
        fingerprint: The config's checkpoint fingerprint (:func:`harness.checkpoint.config_fingerprint`).
        dist: The ranks of a torchrun run (:mod:`harness.distributed`): the loss runs under
            ``DistributedDataParallel``, each rank trains its shard of the batch stream, rank 0
            evaluates, saves and writes.
    """

    def __init__(self, cfg: Any, workload: Workload, data: Any, model: nn.Module, autocast: Any, meters: Meters,
                 stop: StopRequest, total_steps: int, flops: BatchFlops,
                 burden_flops_per_s: Optional[float], on_curve: Callable[[list[dict[str, Any]]], None],
                 on_files: Callable[[dict[str, str]], None], wall_start: float, run_dir: Optional[Path] = None,
                 fingerprint: str = "", dist: distributed.Dist = distributed.SINGLE) -> None:
        self.cfg, self.t = cfg, cfg.trainer
        self.workload, self.data, self.model, self.autocast = workload, data, model, autocast
        self.meters, self.stop = meters, stop
        self.total_steps = total_steps
        self.flops = flops
        self.burden_flops_per_s = burden_flops_per_s
        self.on_curve, self.on_files = on_curve, on_files
        self.wall_start = wall_start
        self.state = TrainState()
        self.dist = dist
        #: what the training steps call: the model, or torch.compile of it (same parameters)
        self.step_model: nn.Module = step_model_for(model, self.t)
        if self.step_model is not model:
            log.info("trainer.compile: training steps run torch.compile(backend=%s, mode=%s); evaluation and FLOP "
                     "counting use the eager model", self.t.compile_backend, self.t.compile_mode)
        self.ddp: Optional[nn.Module] = None
        if dist.enabled:  # device_ids None: batches are already on this rank's device, DDP moves nothing
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(LossModule(self.step_model, workload), device_ids=None)
        self.opt, self.sched = build_optimizer(self.t, model, total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.t.precision == "fp16")
        self.run_dir, self.fingerprint = run_dir, fingerprint
        self.checkpoint_every_s = self.t.get("checkpoint_every_s") if run_dir is not None else None
        #: Totals of the earlier segments of a resumed run (time, energy, wall), and their count.
        self.previous: dict[str, Any] = {}
        self.segment = 0
        self._resume_rng: Optional[dict[str, Any]] = None
        #: time.time() when the first training window opened (the end of start-up)
        self.first_step_at: Optional[float] = None
        self._last_checkpoint = time.perf_counter()

    # ------------------------------------------------------------ checkpoints
    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``ckpt`` (:mod:`harness.checkpoint`): states now, RNG after the data replay."""
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        self.flops.load_state_dict(ckpt["flops"])
        if not self.dist.is_main:  # the checkpoint holds the run's global tallies: rank 0 carries them
            self.state.samples = self.state.warmup_samples = 0
            self.flops.load_state_dict(distributed.zero_tallies(ckpt["flops"]))
        self.previous = dict(ckpt["totals"])
        self.segment = int(ckpt["segment"])
        self._resume_rng = ckpt["rng"]

    def totals(self) -> dict[str, Any]:
        """Time and energy of every segment so far (this one's windows plus the earlier ones'); with
        several ranks the energy of all of them (a collective: every rank calls it)."""
        from harness.checkpoint import add_previous

        so_far = self.meters.energy.so_far() if self.meters.energy is not None else {}
        if self.dist.enabled:
            so_far.update(distributed.combine_energy(self.dist, so_far, distributed.tracking_mode(self.cfg)))
        now: dict[str, Any] = {"train_time_s": self.meters.seconds("train"), "eval_time_s": self.meters.seconds("eval"),
                               "warmup_time_s": self.meters.seconds("warmup"),
                               "wall_time_s": time.perf_counter() - self.wall_start,
                               **{k: so_far.get(k) for k in ("energy_gpu_j", "energy_cpu_j", "energy_ram_j",
                                                             "energy_total_j", "co2_kg")}}
        add_previous(now, self.previous)
        return now

    def save_checkpoint(self) -> None:
        """Save everything needed to resume (between timed windows only). With several ranks every
        rank calls it at the same step: the tallies are summed over the ranks and rank 0 writes."""
        from harness import checkpoint

        start = time.perf_counter()
        state = dataclasses.asdict(self.state)
        flops = self.flops.state_dict()
        if self.dist.enabled:
            state["samples"], state["warmup_samples"] = self.dist.sum([self.state.samples, self.state.warmup_samples])
            flops = distributed.merge_flop_states(self.dist.gather_objects(flops))
        totals = self.totals()
        if not self.dist.is_main:
            return
        checkpoint.save(self.run_dir, {
            "fingerprint": self.fingerprint,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": checkpoint.rng_states(self.workload.device),
            "state": state, "flops": flops,
            "totals": totals, "segment": self.segment + 1,
        })
        self._last_checkpoint = time.perf_counter()
        log.info("checkpoint at step %d/%d (%.2f s) in %s", self.state.steps, self.total_steps,
                 self._last_checkpoint - start, self.run_dir)

    def _checkpoint_due(self) -> bool:
        return self.checkpoint_every_s is not None and \
            time.perf_counter() - self._last_checkpoint >= self.checkpoint_every_s

    # ------------------------------------------------------------ one step
    def _step(self, batch: Any, schedule: bool = True) -> torch.Tensor:
        with self.autocast:
            total, count = self.workload.loss(self.step_model, batch) if self.ddp is None else self.ddp(batch)
            loss = total / count  # the mean over the batch's real items (padding excluded)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.t.grad_clip_norm is not None:
            self.scaler.unscale_(self.opt)  # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        if schedule:
            self.sched.step()
        return loss.detach()

    # ------------------------------------------------------------ warm-up
    def warm_up(self, num_steps: int) -> None:
        """Run ``num_steps`` throw-away steps in a ``warmup`` window, then restore everything."""
        if num_steps <= 0 or self.stop.requested:
            return
        device = self.workload.device
        model_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        opt_state = copy.deepcopy(self.opt.state_dict())
        sched_state = copy.deepcopy(self.sched.state_dict())
        scaler_state = copy.deepcopy(self.scaler.state_dict())
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        # Own batches (another seed), so the training data order is that of a run without warm-up.
        batches = shard(batches_forever(self.data, self.t.batch_size, torch.Generator().manual_seed(self.cfg.seed + 1)),
                        self.dist)
        self.model.train()
        with self.meters.window("warmup"):
            for _ in range(num_steps):
                batch = next(batches)
                # The scheduler stays put: warm-up may be longer than a short run's schedule
                # (OneCycleLR refuses to step past its total), and its state is restored anyway.
                self._step(batch, schedule=False)
                self.flops.add("warmup", batch)
                self.state.warmup_steps += 1
                self.state.warmup_samples += self.workload.batch_size_of(batch)
                if self.stop.requested and not self.dist.enabled:  # ranks keep in step: a few steps more
                    break
        self.model.load_state_dict(model_state)
        self.opt.load_state_dict(opt_state)
        self.sched.load_state_dict(sched_state)
        self.scaler.load_state_dict(scaler_state)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

    # ------------------------------------------------------------ training
    def _evaluate(self) -> Optional[Evaluation]:
        """Evaluate in an ``eval`` window. With several ranks, rank 0 evaluates the unwrapped model
        (DDP keeps every rank's weights and buffers equal) while the others wait at a barrier."""
        evaluation = None
        if self.dist.is_main:
            with self.meters.window("eval"):
                self.model.eval()
                # inference_mode: no autograd recording, no version counters or view tracking (the
                # workloads' own no_grad stays for callers outside the loop)
                with torch.inference_mode(), self.autocast:
                    evaluation = self.workload.evaluate(self.model, self.data)
                self.model.train()
            name = self.workload.metric_name
            if name not in evaluation.metrics:
                raise KeyError(f"workload {self.workload.name!r}: evaluate() returned no {name!r} "
                               f"(got {', '.join(evaluation.metrics) or 'nothing'})")
            self.on_files(evaluation.files)
            s = self.state
            s.eval_flops = None if s.eval_flops is None or evaluation.flops is None else s.eval_flops + evaluation.flops
            s.eval_flops_method = evaluation.flops_method
        self.dist.barrier()
        return evaluation

    def _progress(self) -> dict[str, Any]:
        """The curve row's work so far (every rank's samples and FLOPs, earlier segments' time and
        energy); with several ranks a collective, so every rank calls it."""
        s = self.state
        totals = self.totals()
        samples, flops = s.samples, self.flops.train_flops("train")
        if self.dist.enabled:
            samples, flops = self.dist.sum([samples, flops])
        train_s = totals["train_time_s"]
        return dict(
            eval_index=len(s.curve), train_samples=int(samples), train_steps=s.steps,
            epochs=samples / self.data.num_train, train_flops=flops, train_time_s=train_s,
            hardware_burden_flops=None if self.burden_flops_per_s is None else self.burden_flops_per_s * train_s,
            energy_total_j=totals["energy_total_j"],
        )

    def _curve_row(self, progress: dict[str, Any], metric: float) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall_start + (self.previous.get("wall_time_s") or 0.0)
        return dict(progress, wall_time_s=wall, metric_name=self.workload.metric_name, metric_value=metric,
                    error=self.workload.error_from_metric(metric), window=CURVE_WINDOW)

    def train(self) -> TrainOutcome:
        """Train to ``total_steps``, evaluating on the schedule; stop early on NaN or a signal."""
        s, t = self.state, self.t
        evals = set(eval_steps(self.total_steps, t.num_evals))
        batches = shard(batches_forever(self.data, t.batch_size, torch.Generator().manual_seed(self.cfg.seed)),
                        self.dist)
        if self._resume_rng is not None:
            # the data position: replay the seeded batch stream to where the checkpoint was taken,
            # then the RNG states as they were there (the replay may draw from them)
            from harness.checkpoint import set_rng_states

            for _ in range(s.steps):
                next(batches)
            set_rng_states(self._resume_rng)
            self._resume_rng = None
            log.info("resumed at step %d/%d (segment %d)", s.steps, self.total_steps, self.segment + 1)
        depth = prefetch_depth(t.get("prefetch_batches"), self.workload.device)
        if depth:  # after any replay, so the RNG states are the checkpoint's when drawing resumes
            batches = Prefetcher(batches, depth)
        self._last_checkpoint = time.perf_counter()
        evaluation: Optional[Evaluation] = None
        evaluated = False
        device = self.workload.device
        nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        # With several ranks, stop, divergence and checkpoint are decided together (Dist.agree) at
        # the check steps; alone, a signal is seen after the step it arrives in.
        stopping = checkpoint_now = False
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.model.train()
        with contextlib.ExitStack() as stack:
            if isinstance(batches, Prefetcher):
                stack.callback(batches.close)
            stack.enter_context(logging_redirect_tqdm())  # log lines print above the bar
            bar = stack.enter_context(contextlib.closing(_progress(self.total_steps, t.progress and self.dist.is_main)))
            while s.steps < self.total_steps:
                if stopping or (self.stop.requested and not self.dist.enabled):
                    return self._interrupted()
                if self.first_step_at is None:
                    self.first_step_at = time.time()
                self.meters.begin("train")
                while s.steps < self.total_steps:
                    t0 = time.perf_counter()
                    batch = next(batches)
                    s.data_time_s += time.perf_counter() - t0
                    loss = self._step(batch)
                    self.flops.add("train", batch)
                    nonfinite |= ~torch.isfinite(loss)
                    s.steps += 1
                    s.samples += self.workload.batch_size_of(batch)
                    bar.update(1)
                    if self.dist.enabled:
                        check = s.steps % NONFINITE_CHECK_EVERY_STEPS == 0 or s.steps in evals
                        if not check:
                            continue
                        diverged, stopping, checkpoint_now = self.dist.agree(
                            device, nonfinite, self.stop.requested, self._checkpoint_due())
                    else:
                        check = s.steps % NONFINITE_CHECK_EVERY_STEPS == 0 or s.steps in evals or self.stop.requested
                        diverged = check and bool(nonfinite.item())
                        stopping, checkpoint_now = self.stop.requested, self._checkpoint_due()
                    if diverged:
                        self.meters.end()
                        return TrainOutcome("diverged", f"training loss became NaN or infinite by step {s.steps}")
                    if check:
                        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                    if s.steps in evals or stopping or checkpoint_now:
                        break
                self.meters.end()
                if stopping:
                    if self.checkpoint_every_s is not None:
                        self.save_checkpoint()
                    return self._interrupted()
                self.flops.settle()  # count new batch shapes here, between the timed windows
                if s.steps not in evals:  # a checkpoint's break
                    self.save_checkpoint()
                    continue
                progress = self._progress()
                evaluation, evaluated = self._evaluate(), True
                if evaluation is not None:
                    metric = evaluation.metrics[self.workload.metric_name]
                    s.curve.append(self._curve_row(progress, metric))
                    self.on_curve(s.curve)
                    log.info("step %d/%d  %s  train %.1fs", s.steps, self.total_steps,
                             "  ".join(f"{k}={v:.4f}" for k, v in evaluation.metrics.items()),
                             self.meters.seconds("train"))
                due = self._checkpoint_due()
                if self.dist.enabled:
                    (due,) = self.dist.agree(device, due)
                if due and s.steps < self.total_steps:
                    self.save_checkpoint()
        if not evaluated:  # resumed after the last evaluation: nothing left to train
            evaluation = self._evaluate()
        if evaluation is None:  # a rank other than 0: rank 0 reports the metrics
            return TrainOutcome("ok")
        final = s.curve[-1]
        return TrainOutcome("ok", metric_value=final["metric_value"], error=final["error"],
                            metrics=dict(evaluation.metrics), metric_details=dict(evaluation.details) or None)

    def _interrupted(self) -> TrainOutcome:
        return TrainOutcome("interrupted", f"stopped by {self.stop.name} after {self.state.steps} of "
                                           f"{self.total_steps} steps (warm-up {self.state.warmup_steps})")
