"""One run: build the workload, train it inside measurement windows, write the result.

The runner knows nothing about any particular model or dataset: it talks to the
:class:`harness.workload.Workload` interface, and to the measurement modules (flops, timing,
energy, hardware). Bad input raises :class:`UserError` before anything is written; a failure
after that is recorded in ``result.json`` with its status.
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
from typing import Any, Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from harness.measure import flops as flopcount
from harness.errors import UserError
from harness.device import PRECISION_DTYPES, device_info, resolve_device
from harness.measure.peaks import find_peaks, hardware_burden_flops, ratio
from harness.results import empty_result, write_curve, write_result
from harness.measure.timer import synchronize
from harness.workload import Workload, build_workload, workload_names
import harness.workloads  # noqa: F401,E402  (registers the built-in workloads)

log = logging.getLogger("harness")

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
NONFINITE_CHECK_EVERY_STEPS = 25  # how often the loss is checked for NaN/inf (each check syncs)
FLOP_COUNT_TRAIN_SAMPLES = 8  # batch for the FlopCounterMode step (BatchNorm needs > 1 in train mode)

ENERGY_WINDOW = "training steps, warm-up included, evaluation excluded"
TIME_METHOD = (
    "perf_counter windows closed by a device synchronisation; train_time_s excludes warm-up and "
    "evaluation and includes data loading (data_time_s is that share)"
)


# ---------------------------------------------------------------- validation
def validate(cfg: DictConfig) -> None:
    """Reject bad input before any work or output. Each message names key, value and choices."""
    from models import MODEL_REGISTRY

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    check(cfg.workload in workload_names(),
          f"workload={cfg.workload!r} is unknown; known workloads: {', '.join(workload_names())}")
    check(cfg.model.name in MODEL_REGISTRY,
          f"model={cfg.model.name!r} is unknown; known models: {', '.join(sorted(MODEL_REGISTRY))}")
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
    if cfg.measure.codecarbon:
        from harness.measure.energy import known_country_iso_codes

        codes = known_country_iso_codes()
        check(cfg.measure.country_iso_code in codes,
              f"measure.country_iso_code={cfg.measure.country_iso_code!r} is unknown to codecarbon; "
              f"valid: ISO 3166-1 alpha-3 codes such as USA, FRA, DEU ({len(codes)} known)")
    check(t.timing_warmup_steps >= 0, f"trainer.timing_warmup_steps={t.timing_warmup_steps} is invalid: it must be >= 0")


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


def build_optimizer(cfg: Any, model: torch.nn.Module, total_steps: int):
    t = cfg.trainer
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.momentum > 0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.schedule == "onecycle":  # Smith & Topin 2017, "Super-Convergence"
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=total_steps, pct_start=t.warmup_fraction)
    elif t.schedule == "cosine":  # Loshchilov & Hutter 2017, SGDR, without restarts
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def eval_steps(total_steps: int, num_evals: int) -> list[int]:
    """Steps after which to evaluate: evenly spread, the last at the end of training."""
    return sorted({max(1, round(total_steps * (i + 1) / num_evals)) for i in range(num_evals)})


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="train", disable=not enabled, dynamic_ncols=True, leave=False)


def _batches(workload: Workload, data: Any, batch_size: int, rng: torch.Generator) -> Iterator[Any]:
    """Training batches forever, epoch after epoch."""
    while True:
        empty = True
        for batch in data.train_batches(batch_size, rng):
            empty = False
            yield batch
        if empty:
            raise UserError(f"trainer.batch_size={batch_size} is larger than the {data.num_train} training samples")


# ---------------------------------------------------------------- the run
def run(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]] = None) -> dict[str, Any]:
    """Train and measure one configuration; write ``result.json`` and ``curve.csv`` into ``run_dir``.

    Raises :class:`UserError` for bad input, before anything is written.
    """
    wall_start = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc)
    validate(cfg)
    device = resolve_device(cfg.device)
    autocast = set_precision(cfg.trainer.precision, device)
    seed_everything(cfg.seed)
    workload = build_workload(cfg.workload, cfg, device)
    data = workload.build_data()
    model = workload.build_model(data).to(device)

    t = cfg.trainer
    steps_per_epoch = data.num_train // t.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"trainer.batch_size={t.batch_size} is larger than the {data.num_train} training samples")
    total_steps = t.max_steps or max(1, int(t.epochs * steps_per_epoch))

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
        dataset=data.name,
        dataset_source=data.source,
        num_params=sum(p.numel() for p in model.parameters()),
        precision=t.precision,
        batch_size=t.batch_size,
        metric_name=workload.metric_name,
        status="failed",
        energy_window=ENERGY_WINDOW,
        time_method=TIME_METHOD,
        train_flops_method="3 x fwd_flops_per_sample x train_samples (Thompson et al. / Amodei & Hernandez)",
        fwd_flops_method="fvcore FlopCountAnalysis, eval mode, 1 multiply-add = 2 FLOPs",
        train_step_flops_method="torch.utils.flop_counter.FlopCounterMode over forward+backward; ratio = measured / (3 x fwd)",
        **device_info(device),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    curve: list[dict[str, Any]] = []
    timed_samples = 0
    from harness.measure.energy import EnergyMeter

    meter = EnergyMeter(
        device=device,
        output_dir=run_dir,
        country_iso_code=cfg.measure.country_iso_code,
        use_codecarbon=cfg.measure.codecarbon,
        measure_power_secs=cfg.measure.codecarbon_measure_power_s,
        nvml_sample_interval_s=cfg.measure.nvml_sample_interval_s,
    )
    try:
        _measure_flops(cfg, workload, data, model, autocast, result)
        timed_samples = _train(cfg, workload, data, model, autocast, meter, result, curve, total_steps, run_dir, wall_start)
    except torch.cuda.OutOfMemoryError as exc:
        result.update(status="oom", failure_reason=f"CUDA out of memory: {str(exc).splitlines()[0]}")
    except UserError:
        raise
    except Exception as exc:  # recorded, so a sweep goes on; the log keeps the traceback
        log.exception("run failed")
        result.update(status="failed", failure_reason=f"{type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        try:  # a failed run still records the energy it spent, with its methods
            result.update(meter.finish())
        except Exception:  # noqa: BLE001  (the meter must never mask the run's own outcome)
            log.exception("energy meter failed to finish")
        meter.close()
    _derive(result, cfg, timed_samples)
    result["wall_time_s"] = time.perf_counter() - wall_start
    write_curve(run_dir / "curve.csv", curve)
    write_result(run_dir / "result.json", result)
    return result


def _measure_flops(cfg, workload: Workload, data, model, autocast, result: dict) -> None:
    if not cfg.measure.count_flops:
        result.update(fwd_flops_method=None, train_step_flops_method=None)
        return
    probe_batch = next(iter(data.train_batches(min(FLOP_COUNT_TRAIN_SAMPLES, data.num_train), torch.Generator().manual_seed(0))))
    one = workload.slice_batch(probe_batch, 1)
    with autocast:
        fwd = flopcount.count_forward_macs(model, workload.model_inputs(one), num_samples=1)
    n = workload.batch_size_of(probe_batch)

    def step(m):
        with autocast:
            return workload.loss(m, probe_batch)

    measured = flopcount.count_train_step_flops(model, step, num_samples=n)
    result.update(
        fwd_macs_per_sample=fwd.macs_per_sample,
        fwd_flops_per_sample=fwd.flops_per_sample,
        flops_unsupported_ops=fwd.unsupported_ops,
        train_step_flops_measured_per_sample=measured,
        train_step_flops_ratio=ratio(measured, flopcount.TRAIN_FLOPS_PER_FORWARD_FLOP * fwd.flops_per_sample),
    )


def _train(cfg, workload: Workload, data, model, autocast, meter, result: dict, curve: list, total_steps: int,
           run_dir: Path, wall_start: float) -> int:
    """The training loop; fills ``result`` and ``curve``. Returns the samples in timed (post-warm-up) steps."""
    t = cfg.trainer
    device = workload.device
    opt, sched = build_optimizer(cfg, model, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=t.precision == "fp16")
    rng = torch.Generator().manual_seed(cfg.seed)
    batches = _batches(workload, data, t.batch_size, rng)
    evals = eval_steps(total_steps, t.num_evals)
    warmup_steps = min(t.timing_warmup_steps, total_steps - 1)
    fwd = result["fwd_flops_per_sample"]
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    acc = {"train": 0.0, "warmup": 0.0, "eval": 0.0, "data": 0.0}
    step = samples = timed_samples = 0
    diverged_at: Optional[int] = None

    def mark() -> float:
        synchronize(device)
        return time.perf_counter()

    model.train()
    from tqdm.contrib.logging import logging_redirect_tqdm

    redirect = logging_redirect_tqdm()  # log lines print above the bar instead of through it
    redirect.__enter__()
    bar = _progress(total_steps, t.progress)
    seg_start = mark()
    meter.begin_window()
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            batch = next(batches)
            fetch_s = time.perf_counter() - t0
            with autocast:
                loss = workload.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            nonfinite |= ~torch.isfinite(loss.detach())
            step += 1
            n = workload.batch_size_of(batch)
            samples += n
            if step > warmup_steps:
                acc["data"] += fetch_s
                timed_samples += n
            if step == warmup_steps:  # warm-up ends: its time goes to its own accumulator
                now = mark()
                acc["warmup"] += now - seg_start
                seg_start = now
            bar.update(1)
            if step % NONFINITE_CHECK_EVERY_STEPS == 0 or step in evals:
                if nonfinite.item():
                    diverged_at = step
                    break
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if step in evals:
                now = mark()
                meter.end_window()
                acc["train" if step > warmup_steps else "warmup"] += now - seg_start
                eval_start = mark()
                model.eval()
                with autocast:
                    metric = workload.evaluate(model, data)
                model.train()
                acc["eval"] += mark() - eval_start
                curve.append(
                    dict(
                        eval_index=len(curve), train_samples=samples, train_steps=step,
                        epochs=samples / data.num_train, train_flops=flopcount.train_flops(fwd, samples),
                        train_time_s=acc["train"], energy_total_j=meter.so_far().get("energy_total_j"),
                        wall_time_s=time.perf_counter() - wall_start, metric_name=workload.metric_name,
                        metric_value=metric, error=workload.error_from_metric(metric),
                    )
                )
                write_curve(run_dir / "curve.csv", curve)
                log.info("step %d/%d  %s=%.4f  train %.1fs", step, total_steps, workload.metric_name, metric, acc["train"])
                if step < total_steps:
                    seg_start = mark()
                    meter.begin_window()
        if diverged_at is not None:
            now = mark()
            meter.end_window()
            acc["train" if step > warmup_steps else "warmup"] += now - seg_start
    finally:
        bar.close()
        redirect.__exit__(None, None, None)

    result.update(
        train_samples=samples,
        train_steps=step,
        epochs=samples / data.num_train,
        eval_samples=data.num_eval,
        num_evals=len(curve),
        warmup_steps=warmup_steps,
        train_time_s=acc["train"],
        warmup_time_s=acc["warmup"],
        eval_time_s=acc["eval"],
        data_time_s=acc["data"],
        train_flops=flopcount.train_flops(fwd, samples),
        eval_flops=None if fwd is None else fwd * data.num_eval * len(curve),
    )
    if diverged_at is not None:
        result.update(status="diverged", failure_reason=f"training loss became NaN or infinite by step {diverged_at}")
        return timed_samples
    final = curve[-1]
    result.update(status="ok", metric_value=final["metric_value"], error=final["error"])
    return timed_samples


def _derive(result: dict, cfg: DictConfig, timed_samples: int) -> None:
    """Peaks, hardware burden, achieved FLOP/s and MFU from what was measured."""
    if result.get("device_name") is None:
        return
    peaks = find_peaks(result["device_name"], cfg.trainer.precision, cfg.measure.hardware_profiles_dir)
    result.update(
        peak_flops_per_s=peaks.peak_flops_per_s,
        peak_dtype="fp32",
        peak_source=peaks.peak_source,
        peak_flops_per_s_run_dtype=peaks.peak_flops_per_s_run_dtype,
        peak_run_dtype=PRECISION_DTYPES[cfg.trainer.precision],
        peak_run_dtype_source=peaks.peak_run_dtype_source,
        measured_peak_flops_per_s=peaks.measured_peak_flops_per_s,
        measured_peak_source=peaks.measured_peak_source,
    )
    train_time = result.get("train_time_s") or None
    burden = hardware_burden_flops(result["num_devices"], peaks.peak_flops_per_s, train_time)
    result.update(
        hardware_burden_flops=burden,
        hardware_burden_method=None if burden is None else "num_devices x peak_flops_per_s (fp32) x train_time_s (Thompson et al.)",
    )
    fwd = result.get("fwd_flops_per_sample")
    if fwd is not None and timed_samples and train_time:
        achieved = flopcount.TRAIN_FLOPS_PER_FORWARD_FLOP * fwd * timed_samples / train_time
        result.update(
            achieved_flops_per_s=achieved,
            achieved_flops_method="3 x fwd FLOPs x samples in timed steps / train_time_s",
            mfu_datasheet=ratio(achieved, peaks.peak_flops_per_s_run_dtype),
            mfu_measured=ratio(achieved, peaks.measured_peak_flops_per_s),
        )
