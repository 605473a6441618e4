"""Typed config of ``python -m harness.audit`` (``conf/audit/audit.yaml`` composes onto it)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore


class OnError(str, Enum):
    raise_ = "raise"  # a bad row stops the audit with one line naming row and column
    skip = "skip"  # a bad row is reported as skipped, with that line, and the rest goes on


@dataclass
class AuditConfig:
    # A claims CSV, or a built-in set: thompson, epoch (read from literature_root).
    claims: Optional[str] = None
    out_dir: str = "results/audit"
    # Folder holding thompson2022/ and epoch/ (Epoch's chip table serves every audit).
    literature_root: Optional[str] = "${oc.env:COMPUTELIMITS_SHARED_DATA,../shared/data}/literature"
    on_error: str = "raise"  # raise | skip
    # Measured mode: a few timed training steps of each buildable model on this device.
    measure: bool = False
    device: str = "auto"
    batch_size: int = 8  # per claim: its batch_size column wins
    steps: int = 3
    warmup_steps: int = 1
    country_iso_code: str = "USA"
    codecarbon: bool = True
    hardware_profiles_dir: str = "results/hardware"
    progress: bool = True
    summary_rows: int = 40  # more claims than this: only flagged rows are printed


def register_configs() -> None:
    ConfigStore.instance().store(name="audit_schema", node=AuditConfig)
