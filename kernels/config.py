"""Typed config of ``python -m kernels``, registered in Hydra's ConfigStore as ``kernels_schema``.

``conf/kernels/kernels.yaml`` names this schema first in its defaults list, so an unknown key or a
value of the wrong type fails when the config is composed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from common.atomic import unwritable_reason
from kernels.ops import TORCH_DTYPES, Conv2dShape, GemmShape, conv2d_bytes

__all__ = [
    "TimingConfig",
    "ConvConfig",
    "SweepConfig",
    "NcuConfig",
    "QuietConfig",
    "KernelsConfig",
    "ConfigError",
    "register_configs",
    "validate",
    "check_device_string",
    "check_out_dir",
    "check_memory",
    "memory_needs",
    "available_memory_bytes",
    "gemm_shapes",
    "conv_shape",
]


@dataclass
class TimingConfig:
    """How each operation is timed (see kernels.timing.time_op)."""

    num_warmup: int = 2  # untimed calls before timing
    num_repeats: int = 5  # timed repeats; the median is reported, the IQR is the spread
    min_repeat_s: float = 0.05  # each repeat loops the op until it lasts at least this long
    max_call_s: float = 2.0  # a dtype's GEMM sweep stops at a shape whose one call takes longer


@dataclass
class ConvConfig:
    """A ResNet-like 3x3 convolution layer (NCHW sizes)."""

    batch: int = 8
    in_channels: int = 64
    out_channels: int = 64
    height: int = 56
    width: int = 56
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    channels_last: bool = True


@dataclass
class SweepConfig:
    """What is measured on one kind of device."""

    dtypes: List[str] = field(default_factory=lambda: ["fp32", "bf16"])
    gemm_shapes: List[List[int]] = field(default_factory=lambda: [[1024, 1024, 1024]])  # [m, n, k]
    conv: ConvConfig = field(default_factory=ConvConfig)
    copy_bytes: int = 128 * 2**20  # size of the buffer copied (read + written = 2x this)
    host_to_device_bytes: int = 256 * 2**20  # CUDA only
    timing: TimingConfig = field(default_factory=TimingConfig)


@dataclass
class NcuConfig:
    """Nsight Compute cross-check (CUDA and an ``ncu`` binary only; skipped otherwise)."""

    enabled: bool = False
    binary: str = "ncu"
    gemm_shape: List[int] = field(default_factory=lambda: [4096, 4096, 4096])
    dtypes: List[str] = field(default_factory=lambda: ["fp32", "bf16"])
    train_step: bool = True  # also one training step of a small MLP
    timeout_s: float = 600.0


@dataclass
class QuietConfig:
    """When a measurement counts as quiet, and how often ``python -m kernels`` tries for one.

    A measured ceiling moves with load (348, then 96 GFLOP/s on one 2-core VM, each with a 4.5 %
    spread), so a small spread alone does not make a measurement quiet: other processes must
    also have left the CPUs alone (:func:`common.host.conditions`). Only a quiet profile feeds
    ``measured_peak_flops_per_s`` (:func:`kernels.profile.select_measured_peak`).
    """

    max_attempts: int = 3  # measure again, up to this many times in all, until quiet
    max_spread_rel: float = 0.05  # every dtype's best GEMM: IQR / median of its repeats at most this
    max_other_cpu_share: float = 0.10  # other processes' share of the host's CPU time (CPU devices)
    max_steal_share: float = 0.10  # hypervisor steal share of the host's CPU time (CPU devices)
    wait_s: float = 10.0  # pause between attempts, so a finishing job can leave


@dataclass
class KernelsConfig:
    """Root config of ``python -m kernels``."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out_dir: str = "results/hardware"  # profile: <out_dir>/<device-slug>.json (+ .png, .txt)
    num_threads: Optional[int] = None  # CPU: torch.set_num_threads; null keeps torch's default
    plot: bool = True  # roofline PNG next to the profile
    flop_check: bool = True  # fvcore and FlopCounterMode counts of each op, recorded in the profile
    cpu: SweepConfig = field(default_factory=SweepConfig)
    cuda: SweepConfig = field(default_factory=SweepConfig)
    ncu: NcuConfig = field(default_factory=NcuConfig)
    quiet: QuietConfig = field(default_factory=QuietConfig)


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key, value and valid choices."""


def register_configs() -> None:
    """Register the schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="kernels_schema", node=KernelsConfig)


def _as_config(cfg: Any) -> KernelsConfig:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    return cfg


def check_device_string(device: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; anything else is a one-line ConfigError."""
    if device != "auto" and not (
        device in ("cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise ConfigError(f"device={device!r} is not valid; choose auto, cpu, cuda or cuda:N")


def validate(cfg: Any, device_type: str) -> KernelsConfig:
    """Check values the schema's types cannot; return the config as a dataclass.

    Raises:
        ConfigError: One line naming the key, the value and the valid choices.
    """
    cfg = _as_config(cfg)
    check_device_string(cfg.device)
    cfg.out_dir = str(Path(cfg.out_dir).expanduser())  # out_dir='~/hw' (quoted for Hydra) means the home folder
    sweep_key = "cuda" if device_type == "cuda" else "cpu"
    sweep: SweepConfig = getattr(cfg, sweep_key)
    valid = list(TORCH_DTYPES) if device_type == "cuda" else ["fp32", "bf16", "fp16"]
    for dtype in sweep.dtypes:
        if dtype not in valid:
            raise ConfigError(f"{sweep_key}.dtypes contains {dtype!r}; valid on {device_type}: {', '.join(valid)}")
    if not sweep.gemm_shapes:
        raise ConfigError(f"{sweep_key}.gemm_shapes is empty; give at least one [m, n, k]")
    for shape in sweep.gemm_shapes:
        if len(shape) != 3 or any(int(x) < 1 for x in shape):
            raise ConfigError(f"{sweep_key}.gemm_shapes has {list(shape)!r}; each must be [m, n, k] with positive sizes")
    t = sweep.timing
    if t.num_repeats < 1 or t.num_warmup < 0 or t.min_repeat_s < 0 or t.max_call_s <= 0:
        raise ConfigError(
            f"{sweep_key}.timing={t!r} is not valid; need num_repeats>=1, num_warmup>=0, "
            "min_repeat_s>=0, max_call_s>0"
        )
    for key in ("copy_bytes", "host_to_device_bytes"):
        if getattr(sweep, key) < 0:
            raise ConfigError(f"{sweep_key}.{key}={getattr(sweep, key)} is not valid; use 0 to skip or a positive size")
    if cfg.num_threads is not None and cfg.num_threads < 1:
        raise ConfigError(f"num_threads={cfg.num_threads} is not valid; use null or a positive integer")
    q = cfg.quiet
    if q.max_attempts < 1:
        raise ConfigError(f"quiet.max_attempts={q.max_attempts} is not valid; use a positive integer")
    if not q.max_spread_rel > 0:
        raise ConfigError(f"quiet.max_spread_rel={q.max_spread_rel} is not valid; use a positive fraction such as 0.05")
    for key in ("max_other_cpu_share", "max_steal_share"):
        value = getattr(q, key)
        if not 0 <= value <= 1:
            raise ConfigError(f"quiet.{key}={value} is not valid; use a share between 0 and 1")
    if q.wait_s < 0:
        raise ConfigError(f"quiet.wait_s={q.wait_s} is not valid; use 0 or more seconds")
    return cfg


def gemm_shapes(sweep: SweepConfig) -> list[GemmShape]:
    """The sweep's GEMM shapes as :class:`GemmShape`."""
    return [GemmShape(int(m), int(n), int(k)) for m, n, k in sweep.gemm_shapes]


def conv_shape(conv: ConvConfig) -> Conv2dShape:
    """The sweep's conv layer as :class:`Conv2dShape`."""
    return Conv2dShape(
        batch=conv.batch,
        in_channels=conv.in_channels,
        out_channels=conv.out_channels,
        height=conv.height,
        width=conv.width,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
    )


#: Share of the available memory a single operation may use; the rest is left to the process
#: (torch's allocator, the interpreter) and to the host.
MEMORY_HEADROOM = 0.9
GIB = 2**30


def check_out_dir(out_dir: str) -> None:
    """Refuse an ``out_dir`` that cannot be written, before anything is measured.

    The folder itself need not exist (the profile's writer makes it); the nearest folder that
    does exist must be a folder and writable.

    Raises:
        ConfigError: One line naming ``out_dir`` and why.
    """
    reason = unwritable_reason(out_dir)
    if reason:
        raise ConfigError(f"out_dir={out_dir!r} cannot be written: {reason}; choose another out_dir")


def memory_needs(cfg: KernelsConfig, device_type: str) -> list[tuple[str, int, int]]:
    """Every measured operation's memory: ``(what, device_bytes, host_bytes)``.

    A GEMM holds its three matrices (A m x k, B k x n, C m x n) at the dtype's size at once;
    its inputs are drawn in fp32 on the host first (kernels.ops._randn), so the largest input's
    fp32 copy is staged on the host too, unless the CPU dtype is fp32 itself (no copy then).
    A copy holds two buffers; a host-to-device copy a pinned host buffer and its device copy.
    On the CPU, device and host are the same memory: the two are added.
    """
    key = "cuda" if device_type == "cuda" else "cpu"
    sweep: SweepConfig = getattr(cfg, key)
    needs: list[tuple[str, int, int]] = []

    def gemm(where: str, shape: list[int], dtype: str) -> None:
        m, n, k = (int(x) for x in shape)
        itemsize = TORCH_DTYPES[dtype].itemsize
        matrices = (m * k + k * n + m * n) * itemsize
        staging = 0 if (device_type == "cpu" and itemsize == 4) else max(m * k, k * n) * 4
        needs.append((f"{where} {[m, n, k]} in {dtype} (3 matrices x {itemsize} B)", matrices, staging))

    for dtype in sweep.dtypes:
        for shape in sweep.gemm_shapes:
            gemm(f"{key}.gemm_shapes", list(shape), dtype)
        itemsize = TORCH_DTYPES[dtype].itemsize
        needs.append((f"{key}.conv in {dtype}", conv2d_bytes(conv_shape(sweep.conv), itemsize), 0))
    if sweep.copy_bytes > 0:
        needs.append((f"{key}.copy_bytes={sweep.copy_bytes} (2 buffers)", 2 * sweep.copy_bytes, 0))
    if device_type == "cuda" and sweep.host_to_device_bytes > 0:
        needs.append((f"{key}.host_to_device_bytes={sweep.host_to_device_bytes}", sweep.host_to_device_bytes,
                      sweep.host_to_device_bytes))
    if device_type == "cuda" and cfg.ncu.enabled:
        for dtype in cfg.ncu.dtypes:
            if dtype in TORCH_DTYPES:
                gemm("ncu.gemm_shape", list(cfg.ncu.gemm_shape), dtype)
    return needs


def _host_available_bytes() -> Optional[int]:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001  (no psutil: /proc/meminfo, else unknown)
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes(device: Any) -> tuple[Optional[int], Optional[int]]:
    """``(device_free, host_available)`` in bytes; None where it cannot be known.

    On the CPU both are the host's available memory (psutil, else /proc/meminfo's MemAvailable);
    on CUDA the device's free memory is ``torch.cuda.mem_get_info``.
    """
    host = _host_available_bytes()
    if getattr(device, "type", "cpu") != "cuda":
        return host, host
    import torch

    try:
        free, _total = torch.cuda.mem_get_info(device)
    except Exception:  # noqa: BLE001  (no answer from the driver: the device check is skipped)
        return None, host
    return int(free), host


def check_memory(cfg: Any, device_type: str, device_free: Optional[int], host_available: Optional[int]) -> None:
    """Refuse a sweep whose largest operation would not fit in memory, before measuring.

    Raises:
        ConfigError: One line naming the key, the value, the memory it needs and what is available.
    """
    cfg = _as_config(cfg)
    on_cpu = device_type != "cuda"
    for what, device_bytes, host_bytes in memory_needs(cfg, device_type):
        checks = [("cpu", device_bytes + host_bytes, host_available)] if on_cpu else [
            (device_type, device_bytes, device_free), ("host", host_bytes, host_available)]
        for where, need, available in checks:
            if available is None or need <= MEMORY_HEADROOM * available:
                continue
            raise ConfigError(
                f"{what} needs {need / GIB:.1f} GiB, more than {MEMORY_HEADROOM:.0%} of the "
                f"{available / GIB:.1f} GiB available on {where}; use smaller sizes"
            )
