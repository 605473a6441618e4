"""The micro-benchmark suite and the hardware profile it produces.

``run_suite`` measures, on one device:

- GEMM (``torch.matmul``) over the configured shapes, per dtype;
- one ResNet-like 3x3 convolution, per dtype;
- memory bandwidth, as a device copy counting bytes read plus written;
- on CUDA, host-to-device bandwidth from pinned memory.

``build_profile`` turns the measurements into the profile (see :mod:`kernels.profile`).
The achieved FLOP/s of a dtype is the best GEMM figure over shapes, where each shape's figure
is analytic FLOPs over the *median* repeat time. Convolutions are reported separately and are
not part of the ceiling: cuDNN/oneDNN may pick Winograd or FFT algorithms that do fewer
multiplications than the nominal count, so their nominal FLOP/s can overstate the hardware.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from kernels.config import KernelsConfig, SweepConfig, conv_shape, gemm_shapes
from kernels.device import cpu_model_name, device_name, device_slug
from kernels.ops import (
    TORCH_DTYPES,
    GemmShape,
    build_conv2d,
    build_copy,
    build_gemm,
    build_host_to_device,
    conv2d_bytes,
    conv2d_flops,
    copy_bytes,
    gemm_bytes,
    gemm_flops,
    precision_mode,
)
from kernels.peaks import DTYPES, datasheet_peak, match_device
from kernels.timing import Timing, time_op

__all__ = ["SCHEMA_VERSION", "CONDITION_KEYS", "resolve_device", "measure_gemm", "run_suite", "build_profile", "versions"]

#: 2: thread count in CPU file names, measured_at, host conditions and quiet, derived CPU peak.
SCHEMA_VERSION = 2


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU.

    Raises:
        ValueError: CUDA asked for but not available (one line, for the CLI).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; valid here: auto, cpu")
    return device


def _record(op: str, dtype: str, shape: dict, flops: int | None, num_bytes: int, timing: Timing) -> dict[str, Any]:
    median = timing.median_s
    return {
        "op": op,
        "dtype": dtype,
        "shape": shape,
        "flops": flops,
        "bytes": num_bytes,
        "arithmetic_intensity_flops_per_byte": (flops / num_bytes) if flops is not None and num_bytes else None,
        "flops_per_s": (flops / median) if flops is not None and median > 0 else None,
        "bytes_per_s": (num_bytes / median) if median > 0 else None,
        **timing.as_dict(),
    }


def _time(fn: Callable[[], object], device: torch.device, sweep: SweepConfig) -> Timing:
    t = sweep.timing
    return time_op(fn, device, num_warmup=t.num_warmup, num_repeats=t.num_repeats, min_repeat_s=t.min_repeat_s)


def measure_gemm(shape: GemmShape, dtype: str, device: torch.device, sweep: SweepConfig) -> dict[str, Any]:
    """Time one GEMM shape in one dtype; the record has ``flops_per_s`` and the spread."""
    with precision_mode(dtype, device):
        fn = build_gemm(shape, dtype, device)
        timing = _time(fn, device, sweep)
    itemsize = torch.empty((), dtype=TORCH_DTYPES[dtype]).element_size()
    return _record("gemm", dtype, shape.as_dict(), gemm_flops(shape), gemm_bytes(shape, itemsize), timing)


def _one_call_s(fn: Callable[[], object], device: torch.device) -> float:
    from kernels.timing import synchronize

    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def run_suite(
    cfg: KernelsConfig, device: torch.device, log: Callable[[str], None] = lambda _msg: None
) -> list[dict[str, Any]]:
    """Run every configured micro-benchmark on ``device``; return one record per measurement."""
    sweep: SweepConfig = cfg.cuda if device.type == "cuda" else cfg.cpu
    records: list[dict[str, Any]] = []
    for dtype in sweep.dtypes:
        # Small to large; stop a dtype whose single call gets too slow (e.g. an emulated dtype).
        for shape in sorted(gemm_shapes(sweep), key=gemm_flops):
            with precision_mode(dtype, device):
                probe_s = _one_call_s(build_gemm(shape, dtype, device), device)
            if probe_s > sweep.timing.max_call_s:
                log(f"gemm {dtype} {shape}: one call took {probe_s:.2f} s > max_call_s; skipping larger shapes")
                records.append({"op": "gemm", "dtype": dtype, "shape": shape.as_dict(), "skipped": "max_call_s"})
                break
            rec = measure_gemm(shape, dtype, device, sweep)
            records.append(rec)
            log(f"gemm   {dtype:5s} {str(shape):>16s}  {rec['flops_per_s'] / 1e9:10.1f} GFLOP/s  ±{rec['spread_rel']:.1%}")
        conv = conv_shape(sweep.conv)
        with precision_mode(dtype, device):
            fn = build_conv2d(conv, dtype, device, channels_last=sweep.conv.channels_last)
            timing = _time(fn, device, sweep)
        itemsize = torch.empty((), dtype=TORCH_DTYPES[dtype]).element_size()
        rec = _record("conv2d", dtype, conv.as_dict(), conv2d_flops(conv), conv2d_bytes(conv, itemsize), timing)
        rec["channels_last"] = sweep.conv.channels_last
        records.append(rec)
        log(f"conv2d {dtype:5s} {str(conv):>16s}  {rec['flops_per_s'] / 1e9:10.1f} GFLOP/s  ±{rec['spread_rel']:.1%}")
    if sweep.copy_bytes > 0:
        fn, numel = build_copy(sweep.copy_bytes, device)
        rec = _record("copy", "fp32", {"numel": numel}, 0, copy_bytes(numel, 4), _time(fn, device, sweep))
        rec["arithmetic_intensity_flops_per_byte"] = None
        rec["flops_per_s"] = None
        records.append(rec)
        log(f"copy   {numel * 4 / 2**20:.0f} MiB  {rec['bytes_per_s'] / 1e9:10.1f} GB/s (read + write)")
        del fn
    if device.type == "cuda" and sweep.host_to_device_bytes > 0:
        fn, numel = build_host_to_device(sweep.host_to_device_bytes, device)
        rec = _record("host_to_device", "fp32", {"numel": numel, "pinned": True}, None, numel * 4, _time(fn, device, sweep))
        records.append(rec)
        log(f"h2d    {numel * 4 / 2**20:.0f} MiB  {rec['bytes_per_s'] / 1e9:10.1f} GB/s (pinned)")
        del fn
    return records


def _nvml_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - no NVML, no driver: the field stays null
        return None


def versions(device: torch.device) -> dict[str, Any]:
    """Library and driver versions that a measurement depends on (null where not applicable)."""
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "driver": _nvml_driver_version() if cuda else None,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "platform": platform.platform(),
    }


def _best(records: list[dict[str, Any]], op: str, dtype: str, key: str) -> dict[str, Any] | None:
    candidates = [r for r in records if r["op"] == op and r["dtype"] == dtype and r.get(key) is not None]
    return max(candidates, key=lambda r: r[key]) if candidates else None


#: Keys the quiet loop (kernels.quiet) fills, copied into the profile (null when absent).
CONDITION_KEYS: tuple[str, ...] = (
    "measured_at",
    "quiet",
    "quiet_reason",
    "quiet_criteria",
    "quiet_attempts",
    "host_load_avg_start",
    "host_load_avg_end",
    "process_cpu_share",
    "host_other_cpu_share",
    "host_steal_share",
    "contended",
    "contention_reason",
)


def _host_and_derived_peak(
    device: torch.device, num_threads: int | None
) -> tuple[dict[str, Any], dict[str, float | None], dict[str, str | None]]:
    """Host topology, cores in use, and the derived CPU peak per dtype (CPUs only)."""
    from common.host import cores_in_use, host_info
    from kernels.cpu_peak import cpu_peak

    info = host_info()
    if device.type != "cpu":
        return {"host": info, "cores_in_use": None}, {d: None for d in DTYPES}, {d: None for d in DTYPES}
    cores = cores_in_use(num_threads, info) if num_threads else None
    derived: dict[str, float | None] = {}
    source: dict[str, str | None] = {}
    for dtype in DTYPES:
        peak = cpu_peak(dtype, cores)
        derived[dtype] = peak.flops_per_s
        source[dtype] = peak.source if peak.flops_per_s is not None else f"null: {peak.reason}"
    return {"host": info, "cores_in_use": cores}, derived, source


def build_profile(
    cfg: KernelsConfig,
    device: torch.device,
    records: list[dict[str, Any]],
    *,
    elapsed_s: float | None = None,
    flop_checks: list[dict[str, Any]] | None = None,
    ncu: dict[str, Any] | None = None,
    conditions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the hardware profile from the measurement records.

    Keys (units in the names, null where unknown):
        device_name, device_slug, device_type, cpu_model, num_threads, created_at,
        schema_version, versions;
        measured_at (UTC ISO start of the measurement), quiet, quiet_reason, quiet_criteria,
        quiet_attempts, host_load_avg_start/_end, process_cpu_share, host_other_cpu_share,
        host_steal_share, contended, contention_reason (all from ``conditions``, see
        :mod:`kernels.quiet`; null when not given), host (:func:`common.host.host_info`),
        cores_in_use;
        derived_peak_flops_per_s[dtype], derived_peak_source[dtype] (the derivation, or
        ``null: <reason>``), fraction_of_derived_peak[dtype] (CPUs; null elsewhere);
        achieved_flops_per_s[dtype] and achieved_at[dtype] (op, shape, spread);
        datasheet_flops_per_s[dtype], datasheet_device, datasheet_source[dtype];
        fraction_of_datasheet[dtype] (achieved over datasheet);
        conv2d_flops_per_s[dtype];
        bandwidth_bytes_per_s {device_copy, host_to_device} and bandwidth_at;
        measurements (every record), flop_counter_check, ncu_flop_check, method, config,
        elapsed_s.
    """
    from omegaconf import OmegaConf

    name = device_name(device)
    achieved: dict[str, float | None] = {}
    achieved_at: dict[str, dict[str, Any] | None] = {}
    conv_flops: dict[str, float | None] = {}
    for dtype in DTYPES:
        best = _best(records, "gemm", dtype, "flops_per_s")
        achieved[dtype] = best["flops_per_s"] if best else None
        achieved_at[dtype] = (
            {"op": "gemm", "shape": best["shape"], "time_median_s": best["time_median_s"], "spread_rel": best["spread_rel"]}
            if best
            else None
        )
        conv = _best(records, "conv2d", dtype, "flops_per_s")
        conv_flops[dtype] = conv["flops_per_s"] if conv else None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one note below instead of a warning per dtype
        entries = {dtype: datasheet_peak(name, dtype) for dtype in DTYPES}
    matches = match_device(name)
    datasheet = {d: (e.flops_per_s if e else None) for d, e in entries.items()}
    bandwidth: dict[str, float | None] = {"device_copy": None, "host_to_device": None}
    bandwidth_at: dict[str, dict[str, Any] | None] = {"device_copy": None, "host_to_device": None}
    for key, op in (("device_copy", "copy"), ("host_to_device", "host_to_device")):
        best = _best(records, op, "fp32", "bytes_per_s")
        if best:
            bandwidth[key] = best["bytes_per_s"]
            bandwidth_at[key] = {"bytes": best["bytes"], "spread_rel": best["spread_rel"]}

    try:
        config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    except Exception:  # noqa: BLE001 - a plain object in tests
        config = None
    num_threads = torch.get_num_threads() if device.type == "cpu" else None
    host_fields, derived, derived_source = _host_and_derived_peak(device, num_threads)
    conditions = conditions or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "device_name": name,
        "device_slug": device_slug(name),
        "device_type": device.type,
        "cpu_model": cpu_model_name(),
        "num_threads": num_threads,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **{key: conditions.get(key) for key in CONDITION_KEYS},
        **host_fields,
        "versions": versions(device),
        "achieved_flops_per_s": achieved,
        "achieved_at": achieved_at,
        "datasheet_flops_per_s": datasheet,
        "datasheet_device": matches[0].device if len(matches) == 1 else None,
        "datasheet_source": {d: (e.source if e else None) for d, e in entries.items()},
        "fraction_of_datasheet": {
            d: (achieved[d] / datasheet[d]) if achieved[d] and datasheet[d] else None for d in DTYPES
        },
        "derived_peak_flops_per_s": derived,
        "derived_peak_source": derived_source,
        "fraction_of_derived_peak": {
            d: (achieved[d] / derived[d]) if achieved[d] and derived[d] else None for d in DTYPES
        },
        "conv2d_flops_per_s": conv_flops,
        "bandwidth_bytes_per_s": bandwidth,
        "bandwidth_at": bandwidth_at,
        "measurements": records,
        "flop_counter_check": flop_checks,
        "ncu_flop_check": ncu,
        "method": {
            "flops_convention": "2 FLOPs per multiply-add; GEMM 2*m*n*k, conv2d 2*N*Cout*Hout*Wout*Cin*kh*kw",
            "achieved": "best GEMM shape per dtype; per shape: analytic FLOPs / median repeat time",
            "timing": "warm-up calls, one calibration call, then repeats of back-to-back calls lasting "
            ">= min_repeat_s; CUDA events on GPUs, perf_counter after synchronisation elsewhere",
            "spread": "spread_rel = interquartile range / median of the repeats",
            "bandwidth": "device_copy: dst.copy_(src), bytes read + written (STREAM Copy); "
            "host_to_device: pinned host buffer to device, bytes moved",
            "tf32": "fp32 storage with torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32 on; "
            "fp32 runs with both off",
            "datasheet": "kernels.peaks: dense datasheet peaks, sparse figures halved; null when the "
            "device is not in the table (CPUs are not)",
            "derived_peak": "CPUs: cores in use x clock x FLOP/cycle/core from the ISA (kernels.cpu_peak); "
            "a nominal figure, which turbo clocks can exceed",
            "quiet": "repeated until every dtype's best GEMM spread <= quiet.max_spread_rel and, on CPUs, "
            "other processes' and steal's shares of the host's CPU time over the measurement <= their "
            "thresholds (common.host.conditions); the first quiet attempt, else the least contended, is reported",
        },
        "config": config,
        "elapsed_s": elapsed_s,
    }
