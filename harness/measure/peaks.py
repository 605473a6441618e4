"""The run's peaks and the paper's hardware burden.

Thompson et al. define hardware burden as (number of processors) x (processor peak FLOP/s) x
(training time), with the FP32 peak. The datasheet peaks live in ``kernels.peaks`` (one
source per entry); a measured ceiling comes from the profile that ``python -m kernels`` writes.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.device import PRECISION_DTYPES

log = logging.getLogger(__name__)

#: The paper's hardware burden uses the FP32 peak (Thompson et al. 2020, appendix on hardware burden).
BURDEN_DTYPE = "fp32"


@dataclass
class Peaks:
    peak_flops_per_s: Optional[float]
    peak_source: Optional[str]
    peak_flops_per_s_run_dtype: Optional[float]
    peak_run_dtype_source: Optional[str]
    measured_peak_flops_per_s: Optional[float]
    measured_peak_source: Optional[str]


def _measured(profile: Optional[dict], dtype: str) -> Optional[float]:
    if not profile:
        return None
    value = (profile.get("achieved_flops_per_s") or {}).get(dtype)
    return float(value) if value else None


def find_peaks(device_name: str, precision: str, profiles_dir: str | Path) -> Peaks:
    """Datasheet FP32 peak (the paper's), datasheet peak of the run's dtype, and measured peak."""
    from kernels.peaks import datasheet_peak
    from kernels.profile import load_profile, profile_path

    run_dtype = PRECISION_DTYPES[precision]
    with warnings.catch_warnings():  # an unknown device (every CPU) is expected, not news
        warnings.simplefilter("ignore")
        fp32 = datasheet_peak(device_name, BURDEN_DTYPE)
        run = datasheet_peak(device_name, run_dtype)
    profile = load_profile(device_name, profiles_dir)
    measured = _measured(profile, run_dtype)
    measured_fp32 = _measured(profile, BURDEN_DTYPE)
    profile_src = f"measured by `python -m kernels`: {profile_path(device_name, profiles_dir)}"
    peak, source = (fp32.flops_per_s, fp32.source) if fp32 else (None, None)
    if peak is None and measured_fp32 is not None:
        # No datasheet figure (e.g. a CPU): the measured ceiling is the only honest peak we have.
        peak, source = measured_fp32, profile_src
    return Peaks(
        peak_flops_per_s=peak,
        peak_source=source,
        peak_flops_per_s_run_dtype=run.flops_per_s if run else None,
        peak_run_dtype_source=run.source if run else None,
        measured_peak_flops_per_s=measured,
        measured_peak_source=profile_src if measured is not None else None,
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
