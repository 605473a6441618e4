"""Typed configs for ``python -m harness``: dataclasses registered in Hydra's ConfigStore.

The YAML files in ``conf/harness/`` name these schemas in their defaults lists, so an unknown key or a
value of the wrong type fails when the config is composed, before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from harness.workload import workloads
from models import MODEL_REGISTRY


@dataclass
class TrainerConfig:
    """Training budget, optimiser and evaluation schedule."""

    epochs: float = 1.0  # passes over the training set; fractions allowed
    max_steps: Optional[int] = None  # if set, overrides epochs
    batch_size: int = 128
    # 256: ResNet-18 (width 0.25) evaluates 3,250 images/s at 256 and 2,195 at 1,000 on the 2-core CPU
    # (quiet, best of two, no_grad; inference_mode gained nothing): big batches spill the caches.
    eval_batch_size: int = 256
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    grad_clip_norm: Optional[float] = None  # clip the gradients' global L2 norm to this; null = no clipping
    # Save checkpoint.pt in the run folder every this many seconds of training (and on SIGTERM/SIGUSR1),
    # so the same command resumes a stopped run (harness/checkpoint.py). null = off.
    checkpoint_every_s: Optional[float] = None
    warmup_fraction: float = 0.2  # of the steps, for onecycle's ramp
    precision: str = "fp32"  # fp32 | tf32 | bf16 | fp16 (autocast on CUDA; bf16 autocast on CPU)
    # torch.compile the model for the training steps (evaluation and FLOP counting use the eager
    # model, so FLOPs are the same either way); the first compile falls in the timing warm-up.
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend: inductor | aot_eager | eager | cudagraphs
    compile_mode: Optional[str] = None  # inductor mode: null (default) | reduce-overhead | max-autotune
    # Training batches built this many ahead on a background thread while the device computes
    # (harness.train_loop.Prefetcher); null = auto: 2 on CUDA, 0 (off) on the CPU, where the
    # builder would take cores from the step.
    prefetch_batches: Optional[int] = None
    num_evals: int = 2  # evaluations spread evenly over training; the last one ends training
    timing_warmup_steps: int = 5  # steps excluded from train_time_s (counted in warmup_steps)
    progress: bool = True  # tqdm bar on stderr


class CodecarbonTrackingMode(str, Enum):
    """What codecarbon charges to the run when it estimates CPU and RAM power (codecarbon 3.3.2,
    ``external/hardware.py`` ``CPU._get_power_from_cpu_load`` and ``external/ram.py`` ``RAM.total_power``).

    - ``process``: CPU = TDP x this process's (and its children's) CPU-time share of the logical
      CPUs, no idle floor; RAM from its DIMM model applied to the process's RSS.
    - ``machine``: CPU = TDP x (0.1 + 0.9 x machine load^3), every process's load; RAM from the
      DIMM model applied to the machine's total memory (or the SLURM allocation).

    A RAPL or NVML counter is machine-wide whatever the mode.
    """

    process = "process"
    machine = "machine"


@dataclass
class MeasureConfig:
    """What to measure and how."""

    count_flops: bool = True  # fvcore forward count and a FlopCounterMode training step
    codecarbon: bool = True  # CPU/RAM energy and CO2 via codecarbon, offline
    country_iso_code: str = "USA"  # codecarbon offline carbon intensity (ISO 3166-1 alpha-3)
    codecarbon_measure_power_s: float = 1.0
    nvml_sample_interval_s: float = 0.1  # power-sampling fallback period
    hardware_profiles_dir: str = "results/hardware"  # written by `python -m kernels`
    # A measured ceiling (mfu_measured only) is used from a profile younger than this, measured
    # quiet, on this device, thread count and dtype; otherwise it is ignored with a log line.
    profile_max_age_h: float = 24.0
    # `contended: true` when, during training, other processes used more than this share of the
    # host's CPU time, or a hypervisor stole more than the steal share (common/host.py).
    contended_other_cpu_share: float = 0.10
    contended_steal_share: float = 0.10
    # Default "process": on a shared host (a SLURM node, a box several jobs use) "machine" charges
    # other jobs' CPU load and all installed RAM to this run; "process" attributes by this run's
    # CPU time and resident memory. Recorded in result.json's energy_assumptions.
    codecarbon_tracking_mode: CodecarbonTrackingMode = CodecarbonTrackingMode.process
    # > 0: before training, meter an idle window (sleeping) of this many seconds with the same
    # meters, and report idle_power_w and energy_above_idle_j. 0 = off.
    idle_baseline_s: float = 0.0


@dataclass
class HarnessConfig:
    """The root config of one run."""

    # Each of these three is typed by its group's option: workload/<name>.yaml names the workload's
    # schema (``workload_schema/<name>``), data/<name>.yaml its dataset schema (``<workload>_data_schema``),
    # model/<name>.yaml its architecture schema (``<model>_schema``).
    workload: Any = MISSING
    model: Any = MISSING
    data: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    scale: float = 0.25  # width multiplier; 1.0 is the published model (each workload sets its default)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    run_name: Optional[str] = None  # free-form tag copied into result.json
    # A re-run sweep (same overrides, same hydra.sweep.dir) skips the jobs whose result.json is ok;
    # force=true re-runs them too (the old attempt moves to previous/<n>/, harness/rundir.py).
    # Sweeps only: a single run never overwrites a finished run folder.
    force: bool = False


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="harness_schema", node=HarnessConfig)
    # One workload schema and one dataset schema per registered workload (harness/workloads/).
    for name, cls in workloads().items():
        cs.store(group="workload_schema", name=name, node=cls.config_class)
        cs.store(group="data", name=f"{name}_data_schema", node=cls.data_config_class)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="measure", name="measure_schema", node=MeasureConfig)
    # One typed schema per registered model: conf/harness/model/<name>.yaml lists `<name>_schema`.
    for name, (_, config_cls) in MODEL_REGISTRY.items():
        cs.store(group="model", name=f"{name}_schema", node=config_cls)
