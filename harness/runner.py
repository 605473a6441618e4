"""One run's lifecycle: validate, build, count, warm up, train, write. Always a result.

The runner knows nothing about any particular model or dataset: it talks to the
:class:`harness.workload.Workload` interface, the timed loop (:mod:`harness.train_loop`) and the
meters (:mod:`harness.measure`). Bad input raises :class:`UserError` before anything is written.
Anything after validation that fails (building data or model, out of memory, a crash, a
signal) is recorded in ``result.json`` with its status, reason and whatever was measured.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import random
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from harness import distributed
from harness.device import PRECISION_DTYPES, device_info, resolve_device
from harness.errors import UserError
from harness.measure import flops as flopcount
from harness.measure.batch_flops import BatchFlops
from harness.measure.meter import Meters
from harness.measure.peaks import Peaks, find_peaks, hardware_burden_flops, ratio
from harness.optim import OPTIMIZERS, SCHEDULES
from harness.results import empty_result, write_curve, write_files, write_result
from harness import checkpoint
from harness.stop import StopRequest
from harness.train_loop import CURVE_WINDOW, TrainLoop, TrainState
from harness.workload import Workload, build_workload, workload_class, workload_names

log = logging.getLogger("harness")

TRAIN_FLOPS_METHOD = (
    "3 x forward FLOPs of every training batch as executed (padded shapes as run; fvcore once per distinct "
    "shape, cached) (Thompson et al. / Amodei & Hernandez)"
)
FWD_FLOPS_METHOD = ("fvcore FlopCountAnalysis of model(*inputs) on whole batches, eval mode, 1 multiply-add = 2 FLOPs; "
                    "per sample = mean over the training batches")
TRAIN_STEP_FLOPS_METHOD = ("torch.utils.flop_counter.FlopCounterMode over forward+backward of the first training batch; "
                           "ratio = measured / (3 x fvcore forward); fwd_flops_counter_agreement = fvcore / FlopCounterMode "
                           "forward on that batch")
TIME_METHOD = (
    "perf_counter windows closed by a device synchronisation; train_time_s covers every training step "
    "(data loading included, data_time_s is that share); warm-up and evaluation have their own windows"
)
WARMUP_METHOD = (
    "trainer.timing_warmup_steps throw-away steps before training (own batches), on a snapshot of model, "
    "optimiser, scheduler and RNG that is restored afterwards; timed and metered in their own window"
)
#: CPU out-of-memory messages: torch's CPU allocator (c10/core/impl/alloc_cpu.cpp) and the OS.
_CPU_OOM_MARKERS = ("DefaultCPUAllocator: can't allocate memory", "Cannot allocate memory")


# ---------------------------------------------------------------- validation
def validate(cfg: DictConfig) -> None:
    """Reject bad input before any work or output. Each message names key, value and choices."""
    from models import MODEL_REGISTRY, MODEL_TASKS, models_for

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    name = cfg.workload.name
    check(name in workload_names(), f"workload={name!r} is unknown; known workloads: {', '.join(workload_names())}")
    check(cfg.model.name in MODEL_REGISTRY,
          f"model={cfg.model.name!r} is unknown; known models: {', '.join(sorted(MODEL_REGISTRY))}")
    check(MODEL_TASKS[cfg.model.name] == name,
          f"model={cfg.model.name} is a {MODEL_TASKS[cfg.model.name]} model, not a {name} one; "
          f"{name} models: {', '.join(models_for(name))}")
    data_schema = workload_class(name).data_config_class
    check(isinstance(cfg.data, DictConfig) and issubclass(OmegaConf.get_type(cfg.data) or dict, data_schema),
          f"data={cfg.data.get('name')} is not a {name} dataset (its config does not list {name}_data_schema); "
          f"{name} datasets: {', '.join(datasets_for(name)) or 'none'}")
    for key in ("train_subset", "eval_subset"):
        value = cfg.data.get(key)
        check(value is None or value > 0, f"data.{key}={value} is invalid: it must be a positive count or null")
    check(math.isfinite(cfg.scale) and cfg.scale > 0, f"scale={cfg.scale} is invalid: it must be a number > 0")
    t = cfg.trainer
    check(t.precision in PRECISION_DTYPES, f"trainer.precision={t.precision!r} is invalid; valid: {', '.join(PRECISION_DTYPES)}")
    check(t.optimizer in OPTIMIZERS, f"trainer.optimizer={t.optimizer!r} is invalid; valid: {', '.join(OPTIMIZERS)}")
    check(t.schedule in SCHEDULES, f"trainer.schedule={t.schedule!r} is invalid; valid: {', '.join(SCHEDULES)}")
    check(t.epochs > 0, f"trainer.epochs={t.epochs} is invalid: it must be > 0")
    check(t.max_steps is None or t.max_steps > 0, f"trainer.max_steps={t.max_steps} is invalid: it must be > 0 or null")
    check(t.batch_size > 0 and t.eval_batch_size > 0, "trainer.batch_size and trainer.eval_batch_size must be > 0")
    check(t.num_evals >= 1, f"trainer.num_evals={t.num_evals} is invalid: it must be >= 1")
    check(t.lr > 0, f"trainer.lr={t.lr} is invalid: it must be > 0")
    check(t.checkpoint_every_s is None or t.checkpoint_every_s > 0,
          f"trainer.checkpoint_every_s={t.checkpoint_every_s} is invalid: seconds > 0, or null for no checkpoints")
    check(t.prefetch_batches is None or t.prefetch_batches >= 0,
          f"trainer.prefetch_batches={t.prefetch_batches} is invalid: it must be >= 0, or null (2 on CUDA, 0 on the CPU)")
    if t.compile:
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        check(t.compile_backend in backends,
              f"trainer.compile_backend={t.compile_backend!r} is unknown to torch.compile; valid: {', '.join(backends)}")
    check(0 < t.warmup_fraction < 1, f"trainer.warmup_fraction={t.warmup_fraction} is invalid: it must be in (0, 1)")
    if cfg.measure.codecarbon:
        from harness.measure.energy import known_country_iso_codes

        codes = known_country_iso_codes()
        check(cfg.measure.country_iso_code in codes,
              f"measure.country_iso_code={cfg.measure.country_iso_code!r} is unknown to codecarbon; "
              f"valid: ISO 3166-1 alpha-3 codes such as USA, FRA, DEU ({len(codes)} known)")
    check(t.timing_warmup_steps >= 0, f"trainer.timing_warmup_steps={t.timing_warmup_steps} is invalid: it must be >= 0")
    check(t.grad_clip_norm is None or t.grad_clip_norm > 0,
          f"trainer.grad_clip_norm={t.grad_clip_norm} is invalid: it must be > 0 or null")


def datasets_for(workload: str) -> list[str]:
    """The data options (conf/harness/data/*.yaml) whose config lists ``<workload>_data_schema``."""
    from common.hydra_cli import CONF_DIR

    schema = f"- {workload}_data_schema"
    return sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml")
                  if any(line.strip() == schema for line in p.read_text().splitlines()))


# ---------------------------------------------------------------- small helpers
def git_commit() -> Optional[str]:
    """HEAD of the repository this package runs from, or null outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Configure TF32 and return the autocast context for the run's precision."""
    use_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = use_tf32
    torch.backends.cudnn.allow_tf32 = use_tf32
    if precision in ("fp32", "tf32"):
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise UserError("trainer.precision='fp16' needs a CUDA device; on the CPU use fp32 or bf16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)



def _total_steps(trainer: Any, num_train: int, world_size: int = 1) -> int:
    """Optimiser steps: ``max_steps``, else ``epochs`` passes over the training set, each step
    taking ``batch_size`` samples on each of ``world_size`` devices."""
    steps_per_epoch = num_train // (trainer.batch_size * world_size)
    if steps_per_epoch == 0:
        raise UserError(f"trainer.batch_size={trainer.batch_size} x {world_size} device(s) is larger than the "
                        f"{num_train} training samples")
    return trainer.max_steps or max(1, int(trainer.epochs * steps_per_epoch))


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _CPU_OOM_MARKERS)


def _first_line(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]


# ---------------------------------------------------------------- the run
#: time.time() when ``python -m harness`` began, before its imports (set by harness/__main__.py);
#: taken by the command's first run, so a later job of a local sweep counts from its own run().
_command_started_at: Optional[float] = None


def set_command_start(started_at: float) -> None:
    """The command's start (harness/__main__.py calls it with the time taken before its imports)."""
    global _command_started_at
    _command_started_at = started_at


def _startup_reference() -> tuple[float, str, Optional[str]]:
    """(time.time() start-up is measured from, how, the name of the phase up to run()).

    The command's start for its first run, so imports and config count; otherwise this run's start
    (a later job of a local sweep, or run() called from Python), with nothing before run() to name.
    Not the process's creation time: a shell that execs the command last (``bash -c 'setup && python
    -m harness'``, a batch script) gives the interpreter a process created before the set-up ran.
    """
    global _command_started_at
    started_at, _command_started_at = _command_started_at, None
    if started_at is not None:
        return (started_at, "command start (harness/__main__.py, before its imports; the interpreter's own "
                "start-up, ~0.05 s, not included) to the first training step", "imports_config")
    return time.time(), "run() start to the first training step (no command start: a later job of this process, or run() called from Python)", None


class _Phases:
    """Where start-up goes: seconds per phase, each from the previous mark (time.time())."""

    def __init__(self, start: float) -> None:
        self.last, self.seconds = start, {}

    def mark(self, name: str) -> None:
        now = time.time()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now

    def until(self, end: float, name: str) -> dict[str, float]:
        """The phases so far and ``name`` up to ``end``: they sum to ``end`` - start."""
        return {**self.seconds, name: end - self.last}


def run(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]] = None) -> dict[str, Any]:
    """Train and measure one configuration; write ``result.json`` and ``curve.csv`` into ``run_dir``.

    Raises :class:`UserError` for bad input, before anything is written. Every other outcome
    (``ok``, ``diverged``, ``oom``, ``failed``, ``interrupted``) writes ``result.json``.
    """
    startup_from, startup_method, before_run = _startup_reference()
    wall_start = time.perf_counter()
    phases = _Phases(startup_from)
    if before_run is not None:
        phases.mark(before_run)
    started_at = dt.datetime.now(dt.timezone.utc)
    validate(cfg)
    dist = distributed.from_env()
    device = resolve_device(distributed.device_for(dist, cfg.device))
    distributed.init(dist, device)
    if dist.is_main and dist.enabled:
        distributed.clear_rank_failures(run_dir)
    run_dir = Path(dist.broadcast_object(str(run_dir)))  # rank 0's folder is the run's
    autocast = set_precision(cfg.trainer.precision, device)
    workload = build_workload(cfg.workload.name, cfg, device)
    result = _identity(cfg, workload, device, overrides, started_at)
    result["num_devices"] = dist.world_size
    if dist.enabled:
        result["distributed_method"] = (
            f"torchrun, {dist.world_size} ranks ({dist.local_world_size} per node), DistributedDataParallel over the "
            "workload's loss; each rank trains every world-size-th batch of the seeded stream; samples, steps and "
            "FLOPs summed over ranks; time from rank 0's windows; evaluation on rank 0; "
            + distributed.energy_method(distributed.tracking_mode(cfg)))
    fingerprint = checkpoint.config_fingerprint(result["config"])
    ckpt = _resume_from(run_dir, fingerprint, dist)
    phases.mark("setup")
    meters: Optional[Meters] = None
    loop: Optional[TrainLoop] = None
    joined = False
    data: Any = None
    with StopRequest() as stop:
        try:
            seed_everything(cfg.seed)
            data = workload.build_data()
            phases.mark("data")
            result.update(dataset=data.name, dataset_source=data.source, eval_samples=data.num_eval,
                          dataset_details=getattr(data, "details", None) or None,
                          eval_is_subset=cfg.data.get("eval_subset") is not None)
            total_steps = _total_steps(cfg.trainer, data.num_train, dist.world_size)
            model = workload.build_model(data).to(device)
            result["num_params"] = sum(p.numel() for p in model.parameters())
            phases.mark("model")
            flops = _flop_ledger(cfg, workload, model, autocast)
            result.update(_probe_flops(cfg, workload, data, model, autocast, flops))
            phases.mark("flop_counting")
            peaks = find_peaks(result["device_name"], cfg.trainer.precision, cfg.measure.hardware_profiles_dir,
                               num_threads=torch.get_num_threads(), device_type=device.type,
                               max_profile_age_h=cfg.measure.profile_max_age_h)
            result.update(peaks.fields())
            if dist.is_main:
                run_dir.mkdir(parents=True, exist_ok=True)
            meters = _build_meters(cfg, device, run_dir if dist.is_main else run_dir / "ranks" / str(dist.rank))
            if cfg.measure.idle_baseline_s > 0 and meters.energy is not None:
                meters.energy.measure_idle(cfg.measure.idle_baseline_s)
            peak = result["peak_flops_per_s"]
            loop = TrainLoop(
                cfg, workload, data, model, autocast, meters, stop, total_steps, flops=flops,
                burden_flops_per_s=None if peak is None else result["num_devices"] * peak,
                on_curve=lambda rows: write_curve(run_dir / "curve.csv", rows),
                on_files=lambda files: result.update(prediction_files=write_files(run_dir, files) or None),
                wall_start=wall_start, run_dir=run_dir, fingerprint=fingerprint, dist=dist,
            )
            if ckpt is not None:
                loop.restore(ckpt)
            phases.mark("meters")
            loop.warm_up(cfg.trainer.timing_warmup_steps)
            outcome = loop.train()
            if dist.enabled:  # every rank left train() at the same step: sum what they did
                joined = _join_ranks(dist, loop, meters)
            result.update(status=outcome.status, failure_reason=outcome.failure_reason,
                          metric_value=outcome.metric_value, error=outcome.error, metrics=outcome.metrics,
                          metric_details=outcome.metric_details)
        except UserError:
            if meters is not None:
                meters.close()
            raise
        except KeyboardInterrupt:  # a second SIGINT/SIGTERM: stop now, still write what we have
            result.update(status="interrupted", failure_reason=f"stopped at once by a second {stop.name or 'SIGINT'}")
        except Exception as exc:  # noqa: BLE001  (recorded, so a sweep goes on; the log keeps the traceback)
            if _is_oom(exc):
                where = "CUDA" if isinstance(exc, torch.cuda.OutOfMemoryError) else "host (CPU)"
                result.update(status="oom", failure_reason=f"{where} out of memory: {_first_line(exc)}")
            else:
                log.exception("run failed")
                result.update(status="failed", failure_reason=_first_line(exc))
        finally:
            if meters is not None:
                result.update(meters.finish())
                meters.close()
        if joined:
            result.update(distributed.combine_energy(dist, result, distributed.tracking_mode(cfg)))
        if loop is not None and loop.previous:  # a resumed run: time and energy of every segment
            checkpoint.add_previous(result, {k: v for k, v in loop.previous.items() if k != "wall_time_s"})
        result["num_segments"] = (loop.segment if loop is not None else 0) + 1
        if result["status"] == "interrupted":
            result["stop_signal"] = stop.signum
    if loop is not None:
        result.update(_work_done(loop.state, loop.flops, data, result))
        if loop.first_step_at is not None:
            # start-up: everything before the first training window (imports, data, model, FLOP
            # counting, meters, timing warm-up)
            result.update(startup_time_s=loop.first_step_at - startup_from,
                          startup_method=startup_method + " (timing warm-up included)",
                          startup_phases_s=phases.until(loop.first_step_at, "warmup"))
    if not dist.is_main:  # rank 0 writes the run's result; a failure here is told to it by a file
        if result["status"] in ("failed", "oom"):
            distributed.write_rank_failure(run_dir, dist.rank, result["status"], result["failure_reason"])
        distributed.shutdown()
        return result
    if dist.enabled and result["status"] in ("failed", "oom", "interrupted"):
        result.update(distributed.blame(result["status"], result["failure_reason"],
                                        distributed.read_rank_failures(run_dir, dist.world_size)))
    if result["status"] == "ok":
        log.info("status ok: %s=%s", result["metric_name"], result["metric_value"])
    else:  # the log says how every run ended, not only the summary on stdout
        log.warning("status %s: %s", result["status"], result["failure_reason"])
    _derive(result)
    result["wall_time_s"] = time.perf_counter() - wall_start
    if loop is not None and "wall_time_s" in loop.previous:
        result["wall_time_s"] += loop.previous["wall_time_s"]
    if result["status"] == "interrupted" and checkpoint.checkpoint_path(run_dir).is_file():
        result["checkpoint"] = checkpoint.CHECKPOINT_NAME  # the same command resumes from it
    elif result["status"] == "ok":
        checkpoint.checkpoint_path(run_dir).unlink(missing_ok=True)  # done: nothing to resume
    run_dir.mkdir(parents=True, exist_ok=True)
    write_curve(run_dir / "curve.csv", loop.state.curve if loop is not None else [])
    write_result(run_dir / "result.json", result)
    distributed.shutdown()
    return result


def _resume_from(run_dir: Path, fingerprint: str, dist: distributed.Dist = distributed.SINGLE) -> Optional[dict[str, Any]]:
    """The checkpoint of an interrupted run in ``run_dir`` (its result moved to ``segments/<n>/``), or None.
    With several ranks every rank loads it and rank 0 moves the segment aside once all have."""
    found = checkpoint.resumable(run_dir)
    ckpt = checkpoint.load(run_dir) if found else None
    dist.barrier()
    if ckpt is None:
        return None
    if ckpt["fingerprint"] != fingerprint:
        raise UserError(f"{run_dir} holds a checkpoint of a run with another config; resume it with the same "
                        "overrides, or choose another folder")
    if not dist.is_main:
        return ckpt
    moved = checkpoint.set_segment_aside(run_dir)
    log.info("resuming the interrupted run in %s from its checkpoint (segment %d's result moved to %s)",
             run_dir, int(ckpt["segment"]), moved)
    return ckpt


def _join_ranks(dist: distributed.Dist, loop: TrainLoop, meters: Meters) -> bool:
    """Every rank's samples and FLOP tallies into rank 0's loop state, and the other ranks of this
    node counted as the run's own CPU load (not other processes'). A collective."""
    s = loop.state
    s.samples, s.warmup_samples = (int(v) for v in dist.sum([s.samples, s.warmup_samples]))
    loop.flops.load_state_dict(distributed.merge_flop_states(dist.gather_objects(loop.flops.state_dict())))
    own = meters.host.process_cpu_s if meters.host is not None else 0.0
    cpu = dist.gather_objects((dist.node, own))
    if meters.host is not None:
        meters.host.add_sibling_cpu_s(sum(c for node, c in cpu if node == dist.node) - own)
    return True


def _identity(cfg: DictConfig, workload: Workload, device: torch.device, overrides: Optional[list[str]],
              started_at: dt.datetime) -> dict[str, Any]:
    """The fields known before any work: what ran, where, with which settings."""
    result = empty_result()
    result.update(
        run_id=f"{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        run_name=cfg.get("run_name"),
        started_at=started_at.isoformat(),
        git_commit=git_commit(),
        overrides=list(overrides or []),
        config=OmegaConf.to_container(cfg, resolve=True),
        seed=cfg.seed,
        workload=workload.name,
        benchmark=workload.benchmark,
        model=cfg.model.name,
        scale=float(cfg.scale),
        dataset=cfg.data.get("name"),
        precision=cfg.trainer.precision,
        batch_size=cfg.trainer.batch_size,
        metric_name=workload.metric_name,
        status="failed",
        time_method=TIME_METHOD,
        warmup_method=WARMUP_METHOD,
        curve_window=CURVE_WINDOW,
        energy_window="training windows only: every training step; warm-up (warmup_energy_j) and evaluation excluded",
        train_flops_method=TRAIN_FLOPS_METHOD,
        fwd_flops_method=FWD_FLOPS_METHOD,
        train_step_flops_method=TRAIN_STEP_FLOPS_METHOD,
        **device_info(device),
    )
    return result


def _build_meters(cfg: DictConfig, device: torch.device, run_dir: Path) -> Meters:
    from harness.measure.energy import EnergyMeter
    from harness.measure.host import HostMeter

    m = cfg.measure
    energy = EnergyMeter(
        device=device,
        output_dir=run_dir,
        country_iso_code=m.country_iso_code,
        use_codecarbon=m.codecarbon,
        measure_power_secs=m.codecarbon_measure_power_s,
        nvml_sample_interval_s=m.nvml_sample_interval_s,
        tracking_mode=m.codecarbon_tracking_mode,
    )
    host = HostMeter(max_other_cpu_share=m.contended_other_cpu_share, max_steal_share=m.contended_steal_share)
    return Meters(device, energy=energy, host=host)


def _flop_ledger(cfg: DictConfig, workload: Workload, model: torch.nn.Module, autocast: Any) -> BatchFlops:
    """Tallies for FLOPs per batch as executed: fvcore on ``model(*model_inputs(batch))``, once per shape."""
    def count(batch: Any) -> flopcount.ForwardCount:
        with autocast:
            return flopcount.count_forward_macs(model, workload.model_inputs(batch), num_samples=1)

    return BatchFlops(count if cfg.measure.count_flops else None, workload.shape_key, workload.positions_of)


def _probe_flops(cfg: DictConfig, workload: Workload, data: Any, model: torch.nn.Module, autocast: Any,
                 flops: BatchFlops) -> dict[str, Any]:
    """Count the first training batch three ways: fvcore forward (cached for training), torch's
    FlopCounterMode forward (the counters' agreement) and a FlopCounterMode training step."""
    if not cfg.measure.count_flops:
        return dict(fwd_flops_method=None, train_step_flops_method=None, train_flops_method=None)
    probe = next(iter(data.train_batches(cfg.trainer.batch_size, torch.Generator().manual_seed(cfg.seed))))
    n = workload.batch_size_of(probe)
    flops.add("probe", probe)
    fwd = flops.forward_flops("probe")
    with autocast:
        torch_fwd = flopcount.count_forward_flops_torch(model, workload.model_inputs(probe))

    def step(m: torch.nn.Module) -> torch.Tensor:
        with autocast:
            total, count = workload.loss(m, probe)
            return total / count

    measured = flopcount.count_train_step_flops(model, step, num_samples=n)
    return dict(
        fwd_macs_per_sample=fwd / 2 / n,
        fwd_flops_per_sample=fwd / n,
        fwd_flops_counter_agreement=ratio(fwd, torch_fwd),
        flops_unsupported_ops=dict(sorted(flops.unsupported_ops.items())),
        train_step_flops_measured_per_sample=measured,
        train_step_flops_ratio=ratio(measured * n, flopcount.TRAIN_FLOPS_PER_FORWARD_FLOP * fwd),
    )


def _work_done(state: TrainState, flops: BatchFlops, data: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Samples, steps and FLOPs of the training and warm-up windows, and of the evaluations."""
    num_evals = len(state.curve)
    done = dict(
        train_samples=state.samples,
        train_steps=state.steps,
        epochs=state.samples / data.num_train,
        num_evals=num_evals,
        warmup_steps=state.warmup_steps,
        warmup_samples=state.warmup_samples,
        data_time_s=state.data_time_s,
        train_flops=flops.train_flops("train"),
        warmup_flops=flops.train_flops("warmup") if state.warmup_steps else None,
        padding_fraction=flops.padding_fraction("train"),
        flops_distinct_shapes=flops.distinct_shapes("train") if result.get("train_flops_method") else None,
        flops_count_time_s=flops.count_time_s if result.get("train_flops_method") else None,
    )
    if flops.failure is not None:
        log.warning("FLOP counting failed (%s): train_flops and warmup_flops are null", flops.failure)
    if train_fwd := flops.forward_flops("train"):
        done.update(fwd_flops_per_sample=train_fwd / state.samples, fwd_macs_per_sample=train_fwd / 2 / state.samples,
                    flops_unsupported_ops=dict(sorted(flops.unsupported_ops.items())))
    fwd = done.get("fwd_flops_per_sample", result.get("fwd_flops_per_sample"))
    if num_evals and state.eval_flops is not None:  # the workload counted every evaluation itself
        done.update(eval_flops=state.eval_flops, eval_flops_method=state.eval_flops_method)
    elif fwd is not None and num_evals and not done["padding_fraction"]:
        # Without padding a sample's forward pass costs the same in training and evaluation.
        done.update(eval_flops=fwd * data.num_eval * num_evals,
                    eval_flops_method="fwd_flops_per_sample x eval_samples x num_evals (one forward pass per sample)")
    return done


def _derive(result: dict[str, Any]) -> None:
    """Hardware burden, achieved FLOP/s and MFU: all over the ``train`` window."""
    eval_s, evals, n_eval = result.get("eval_time_s"), result.get("num_evals"), result.get("eval_samples")
    if eval_s and evals and n_eval:
        result["eval_samples_per_s"] = n_eval * evals / eval_s
    train_time = result.get("train_time_s") or None
    burden = hardware_burden_flops(result["num_devices"], result.get("peak_flops_per_s"), train_time)
    result.update(
        hardware_burden_flops=burden,
        hardware_burden_method=None if burden is None else "num_devices x peak_flops_per_s (fp32) x train_time_s (Thompson et al.)",
    )
    train_flops = result.get("train_flops")
    if train_flops and train_time:
        achieved = train_flops / train_time
        result.update(
            achieved_flops_per_s=achieved,
            achieved_flops_method="train_flops / train_time_s (same window: every training step)",
            mfu_theoretical=ratio(achieved, result.get("peak_flops_per_s_run_dtype")),
            mfu_measured=ratio(achieved, result.get("measured_peak_flops_per_s")),
        )
