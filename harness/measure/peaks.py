"""The run's peaks and the paper's hardware burden.

Thompson et al. define hardware burden as (number of processors) x (processor peak FLOP/s) x
(training time), with the FP32 peak. The datasheet peaks live in ``kernels.peaks`` (one
source per entry); a measured ceiling comes from the profile that ``python -m kernels`` writes.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from harness.device import PRECISION_DTYPES

log = logging.getLogger(__name__)

#: The paper's hardware burden uses the FP32 peak (Thompson et al. 2020, appendix on hardware burden).
BURDEN_DTYPE = "fp32"


@dataclass
class Peaks:
    """The run's peaks, each with where it came from (or why it is null)."""

    peak_flops_per_s: Optional[float]
    peak_source: Optional[str]
    peak_flops_per_s_run_dtype: Optional[float]
    peak_run_dtype: str
    peak_run_dtype_source: Optional[str]
    measured_peak_flops_per_s: Optional[float]
    measured_peak_source: Optional[str]
    measured_peak_note: Optional[str]

    def fields(self) -> dict:
        """The ``result.json`` fields."""
        return {"peak_dtype": BURDEN_DTYPE, **asdict(self)}


def _theoretical(device_name: str, device_type: str, dtype: str, num_threads: int) -> tuple[Optional[float], Optional[str]]:
    """Datasheet peak for accelerators; for CPUs, derived from cores in use, clock and ISA."""
    if device_type == "cpu":
        from common.host import cores_in_use
        from kernels.cpu_peak import cpu_peak

        cores = cores_in_use(num_threads)
        if cores is None:
            return None, "null: the physical cores in use could not be read from sysfs"
        peak = cpu_peak(dtype, cores)
        return (peak.flops_per_s, peak.source) if peak.flops_per_s is not None else (None, f"null: {peak.reason}")
    from kernels.peaks import datasheet_peak

    with warnings.catch_warnings():  # an unknown device is reported by the null source, not a warning
        warnings.simplefilter("ignore")
        entry = datasheet_peak(device_name, dtype)
    if entry is None:
        return None, f"null: no datasheet entry for {device_name!r} ({dtype}) in kernels/peaks.py"
    return entry.flops_per_s, entry.source


def find_peaks(device_name: str, precision: str, profiles_dir: str | Path, *, num_threads: int,
               device_type: str, max_profile_age_h: float) -> Peaks:
    """The FP32 theoretical peak (the paper's burden), the run dtype's, and a trusted measured ceiling.

    The theoretical peaks never come from a measurement (a measured ceiling moves with load:
    348 then 96 GFLOP/s on one box). A profile written by ``python -m kernels`` feeds only
    ``measured_peak_flops_per_s`` (and so ``mfu_measured``), and only when it matches this device,
    thread count and dtype, is young enough and was measured quiet; otherwise it is ignored and
    ``measured_peak_note`` (and one log line) says why.
    """
    from kernels.profile import select_measured_peak

    run_dtype = PRECISION_DTYPES[precision]
    fp32, fp32_source = _theoretical(device_name, device_type, BURDEN_DTYPE, num_threads)
    run, run_source = _theoretical(device_name, device_type, run_dtype, num_threads)
    measured = select_measured_peak(device_name, run_dtype, num_threads, max_profile_age_h * 3600.0, profiles_dir)
    if measured.value is None and measured.ignored_reason:
        log.info("measured peak: not used (%s)", measured.ignored_reason)
    return Peaks(
        peak_flops_per_s=fp32,
        peak_source=fp32_source,
        peak_flops_per_s_run_dtype=run,
        peak_run_dtype=run_dtype,
        peak_run_dtype_source=run_source,
        measured_peak_flops_per_s=measured.value,
        measured_peak_source=measured.source if measured.value is not None else None,
        measured_peak_note=measured.ignored_reason,
    )


def hardware_burden_flops(num_devices: int, peak_flops_per_s: Optional[float], train_time_s: Optional[float]) -> Optional[float]:
    """devices x peak FLOP/s x training time (Thompson et al.'s definition); null if a factor is."""
    if peak_flops_per_s is None or train_time_s is None:
        return None
    return num_devices * peak_flops_per_s * train_time_s


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator, null when either is unknown or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator
