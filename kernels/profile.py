"""The hardware profile: where it lives, how it is read, how it is written.

A profile is one JSON object per device, written by ``python -m kernels`` to
``<root>/<device-slug>.json`` (default root ``results/hardware``). Other tools (the harness's
MFU, the analysis) read these top-level keys:

- ``device_name``: the string :func:`kernels.device.device_name` gives.
- ``achieved_flops_per_s``: best measured dense FLOP/s per dtype (``fp32``, ``tf32``, ``bf16``,
  ``fp16``; null where not measured). 2 FLOPs per multiply-add.
- ``datasheet_flops_per_s``: the datasheet peak per dtype from :mod:`kernels.peaks` (null when
  the device is not in the table, e.g. CPUs).
- ``bandwidth_bytes_per_s``: ``{"device_copy": ..., "host_to_device": ...}`` (null where not
  measured).

The rest (versions, the shape that reached each best, every measurement with its spread, the
FLOP-counter and ncu cross-checks) is documented in :func:`kernels.bench.build_profile`.
Loading never measures: a missing profile is None and the caller's fields stay null.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from common.atomic import write_json_atomic
from kernels.device import device_slug

__all__ = [
    "DEFAULT_ROOT", "REQUIRED_KEYS", "profile_path", "load_profile", "measured_peak_flops_per_s", "write_profile",
]

DEFAULT_ROOT = "results/hardware"

#: Keys every profile has; :func:`write_profile` refuses a profile without them.
REQUIRED_KEYS: tuple[str, ...] = (
    "device_name",
    "achieved_flops_per_s",
    "datasheet_flops_per_s",
    "bandwidth_bytes_per_s",
)


def profile_path(device_name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """Path of the profile for ``device_name``: ``<root>/<device-slug>.json``."""
    return Path(root) / f"{device_slug(device_name)}.json"


def load_profile(device_name: str, root: str | Path = DEFAULT_ROOT) -> dict[str, Any] | None:
    """Read the profile for ``device_name``.

    Args:
        device_name: As given by :func:`kernels.device.device_name`.
        root: Folder holding the profiles.

    Returns:
        The profile, or None when there is none. An unreadable or malformed file also gives
        None, with a warning, so that a training run never fails (or measures) because of it.
    """
    path = profile_path(device_name, root)
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


def measured_peak_flops_per_s(
    device_name: str, dtype: str, root: str | Path = DEFAULT_ROOT
) -> float | None:
    """The profile's achieved FLOP/s for ``dtype`` (``fp32``/``tf32``/``bf16``/``fp16``).

    None when there is no profile for the device or the dtype was not measured; never measures.
    """
    profile = load_profile(device_name, root)
    if profile is None:
        return None
    value = (profile.get("achieved_flops_per_s") or {}).get(dtype)
    return float(value) if value else None


def write_profile(profile: dict[str, Any], root: str | Path = DEFAULT_ROOT) -> Path:
    """Write ``profile`` atomically to ``profile_path(profile["device_name"], root)``.

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
    path = profile_path(profile["device_name"], root)
    write_json_atomic(path, profile)
    return path
