"""Which device a run uses, its peaks, and the paper's hardware burden.

Thompson et al. define hardware burden as (number of processors) x (processor peak FLOP/s) x
(training time), with the FP32 peak. The datasheet peaks live in ``kernels.peaks`` (one
source per entry); a measured ceiling comes from the profile that ``python -m kernels`` writes.
Where no datasheet peak exists (e.g. a CPU) and no profile has been measured, the peak and
the burden are null: never guessed.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from harness.errors import UserError

log = logging.getLogger(__name__)

#: trainer.precision -> the dtype key of the peak tables.
PRECISION_DTYPES = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16"}
#: The paper's hardware burden uses the FP32 peak (Thompson et al. 2020, appendix on hardware burden).
BURDEN_DTYPE = "fp32"


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device={spec!r} but torch sees no CUDA device; valid choices here: auto, cpu")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise UserError(f"device={spec!r} is invalid; valid choices: auto, cpu, cuda, cuda:N")


def device_info(device: torch.device) -> dict[str, Any]:
    from kernels.device import device_name

    on_cuda = device.type == "cuda"
    return {
        "device_type": device.type,
        "device_name": device_name(device),
        "num_devices": 1,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if on_cuda else None,
    }


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
