"""The hardware profile: where it lives, how it is read, which measured ceiling a run may trust.

A profile is one JSON object per device (and, on CPUs, per thread count), written by
``python -m kernels`` to ``<root>/<device-slug>.json`` for accelerators and
``<root>/<device-slug>-t<threads>.json`` for CPUs (default root ``results/hardware``), so that
profiles for different thread counts coexist. Other tools read these top-level keys:

- ``device_name``: the string :func:`kernels.device.device_name` gives.
- ``achieved_flops_per_s``: best measured dense FLOP/s per dtype (``fp32``, ``tf32``, ``bf16``,
  ``fp16``; null where not measured). 2 FLOPs per multiply-add.
- ``datasheet_flops_per_s``: the datasheet peak per dtype from :mod:`kernels.peaks` (null when
  the device is not in the table, e.g. CPUs); ``derived_peak_flops_per_s`` the CPU peak from
  cores x clock x ISA (:mod:`kernels.cpu_peak`).
- ``bandwidth_bytes_per_s``: ``{"device_copy": ..., "host_to_device": ...}`` (null where not
  measured).
- ``num_threads``, ``measured_at``, ``quiet``: what :func:`select_measured_peak` checks.

The rest (versions, host conditions, the shape that reached each best, every measurement with
its spread, the FLOP-counter and ncu cross-checks) is documented in
:func:`kernels.bench.build_profile`. Loading never measures: a missing profile is None and the
caller's fields stay null.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from common.atomic import write_json_atomic
from kernels.device import device_slug

__all__ = [
    "DEFAULT_ROOT", "REQUIRED_KEYS", "MeasuredPeak", "profile_path", "load_profile", "select_measured_peak",
    "write_profile",
]

DEFAULT_ROOT = "results/hardware"

#: Keys every profile has; :func:`write_profile` refuses a profile without them.
REQUIRED_KEYS: tuple[str, ...] = (
    "device_name",
    "achieved_flops_per_s",
    "datasheet_flops_per_s",
    "bandwidth_bytes_per_s",
)


def profile_path(device_name: str, root: str | Path = DEFAULT_ROOT, num_threads: Optional[int] = None) -> Path:
    """Path of the profile: ``<root>/<device-slug>.json``, or ``<device-slug>-t<threads>.json``
    when ``num_threads`` is given (CPU profiles, one per thread count)."""
    suffix = f"-t{int(num_threads)}" if num_threads else ""
    return Path(root) / f"{device_slug(device_name)}{suffix}.json"


def load_profile(
    device_name: str, root: str | Path = DEFAULT_ROOT, num_threads: Optional[int] = None
) -> dict[str, Any] | None:
    """Read the profile for ``device_name`` (and ``num_threads``, for a CPU profile).

    Args:
        device_name: As given by :func:`kernels.device.device_name`.
        root: Folder holding the profiles.
        num_threads: The CPU thread count the profile was measured with; None for accelerators.

    Returns:
        The profile, or None when there is none. An unreadable or malformed file also gives
        None, with a warning, so that a training run never fails (or measures) because of it.
    """
    path = profile_path(device_name, root, num_threads)
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        warnings.warn(f"load_profile: cannot read hardware profile {path}: {exc}; ignoring it", stacklevel=2)
        return None
    if not isinstance(profile, dict) or any(key not in profile for key in REQUIRED_KEYS):
        warnings.warn(
            f"load_profile: hardware profile {path} lacks one of {', '.join(REQUIRED_KEYS)}; ignoring it",
            stacklevel=2,
        )
        return None
    return profile


def write_profile(profile: dict[str, Any], root: str | Path = DEFAULT_ROOT) -> Path:
    """Write ``profile`` atomically to its :func:`profile_path` (with ``-t<num_threads>`` when its
    ``device_type`` is ``cpu`` and it records ``num_threads``).

    The JSON goes to a temporary file in the same folder, is flushed and fsynced, then
    renamed over the target with :func:`os.replace`, so readers never see half a file.

    Args:
        profile: Must have the keys in :data:`REQUIRED_KEYS`.
        root: Output folder (created if missing).

    Returns:
        The path written.

    Raises:
        KeyError: If a required key is missing.
    """
    missing = [key for key in REQUIRED_KEYS if key not in profile]
    if missing:
        raise KeyError(f"profile lacks required keys: {', '.join(missing)}")
    threads = profile.get("num_threads") if profile.get("device_type") == "cpu" else None
    path = profile_path(profile["device_name"], root, threads)
    write_json_atomic(path, profile)
    return path


@dataclass(frozen=True)
class MeasuredPeak:
    """A measured ceiling a run may use, or why it may not.

    Attributes:
        value: FLOP/s, or None.
        source: Where the value comes from (profile path, time, threads); None without a value.
        ignored_reason: One line on why no value (None when there is one).
        path: The profile file looked at (None when there was none).
    """

    value: Optional[float]
    source: Optional[str]
    ignored_reason: Optional[str]
    path: Optional[str] = None


def _parse_utc(text: Any) -> Optional[_dt.datetime]:
    try:
        when = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def _age_text(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def select_measured_peak(
    device_name: str,
    dtype: str,
    num_threads: Optional[int],
    max_age_s: Optional[float],
    root: str | Path = DEFAULT_ROOT,
    *,
    now: Optional[_dt.datetime] = None,
) -> MeasuredPeak:
    """The measured ceiling for ``dtype``, only from a profile a run can trust.

    The profile must be for this device; for a CPU profile, measured with ``num_threads``
    threads; younger than ``max_age_s``; measured quiet (``quiet: true``, see
    :mod:`kernels.quiet`); and hold a figure for ``dtype``. Otherwise the value is None and
    ``ignored_reason`` says why in one line (for the caller's log).

    Args:
        device_name: As given by :func:`kernels.device.device_name`.
        dtype: ``fp32``, ``tf32``, ``bf16`` or ``fp16``.
        num_threads: The run's CPU compute threads (checked against CPU profiles only).
        max_age_s: Oldest profile accepted, in seconds; None accepts any age.
        root: Folder holding the profiles.
        now: The current time (tests).
    """
    candidates = [profile_path(device_name, root, num_threads)] if num_threads else []
    candidates.append(profile_path(device_name, root))
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        others = sorted(p.name for p in Path(root).glob(f"{device_slug(device_name)}-t*.json"))
        also = f"; found only {', '.join(others)}" if others else ""
        return MeasuredPeak(None, None, f"no hardware profile for {device_name!r} with {num_threads} threads "
                            f"in {root} (run python -m kernels){also}")
    where = str(path)

    def ignored(reason: str) -> MeasuredPeak:
        return MeasuredPeak(None, None, f"profile {where} ignored: {reason}", where)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reason below says it instead
        profile = load_profile(device_name, root, num_threads if path != candidates[-1] else None)
    if profile is None:
        return ignored("unreadable or lacks required keys")
    if profile.get("device_name") != device_name:
        return ignored(f"it is for {profile.get('device_name')!r}, not {device_name!r}")
    if profile.get("device_type", "cpu") == "cpu":
        measured_threads = profile.get("num_threads")
        if measured_threads is None:
            return ignored("it does not record its thread count (written before profiles did)")
        if num_threads is None or int(measured_threads) != int(num_threads):
            return ignored(f"measured with {measured_threads} threads, this run uses {num_threads}")
    measured_at = _parse_utc(profile.get("measured_at"))
    if measured_at is None:
        return ignored("it does not record when it was measured (measured_at)")
    age_s = ((now or _dt.datetime.now(_dt.timezone.utc)) - measured_at).total_seconds()
    if max_age_s is not None and age_s > max_age_s:
        return ignored(f"measured {_age_text(age_s)} ago, older than the {_age_text(max_age_s)} allowed")
    if profile.get("quiet") is not True:
        why = profile.get("quiet_reason") or "no quiet record"
        return ignored(f"not measured on a quiet machine ({why})")
    value = (profile.get("achieved_flops_per_s") or {}).get(dtype)
    if not value:
        return ignored(f"no {dtype} figure in it")
    threads = f", {profile.get('num_threads')} threads" if profile.get("device_type", "cpu") == "cpu" else ""
    source = f"measured by `python -m kernels` at {profile['measured_at']}{threads}, quiet: {where}"
    return MeasuredPeak(float(value), source, None, where)
