"""A claimed chip's dense peak FLOP/s: the project's datasheet table first, then Epoch AI's chip table.

``kernels/peaks.py`` holds cited datasheet peaks (its TPU entries are 4-chip Cloud TPU boards, the
unit Thompson et al.'s data count). Chips it does not know are looked up in Epoch AI's chip
dataset (``epoch/epoch_chip_dataset.csv`` under the literature folder), whose TPU rows are single
chips, the unit of Epoch's own database.

Precision, when the claim gives none, follows the chip's era: chips with TF32/BF16 units
(NVIDIA Ampere, 2020, and later) and TPUs (whose matrix units multiply in bf16) are taken at their
bf16 tensor peak; older chips at FP32, since mixed precision was opt-in before Ampere and most
papers of that era trained in FP32 (Micikevicius et al. 2018 introduced it in 2017-18). The rule
used is recorded in each row's notes.

A name that matches several variants (``V100`` is SXM2 or PCIe) takes the highest of their peaks:
the claim gets the benefit of the doubt, so ``impossible`` means impossible on any of them.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Optional

from harness.errors import UserError

#: Epoch chip-table columns per precision (the tensor column serves fp16 and bf16).
EPOCH_COLUMNS = {
    "fp32": ("FP32 (single precision) performance (FLOP/s)",),
    "tf32": ("TF32 (TensorFloat-32) performance (FLOP/s)",),
    "fp16": ("Tensor-FP16/BF16 performance (FLOP/s)", "FP16 (half precision) performance (FLOP/s)"),
    "bf16": ("Tensor-FP16/BF16 performance (FLOP/s)",),
}
EPOCH_CHIP_FILE = Path("epoch") / "epoch_chip_dataset.csv"
#: NVIDIA Ampere's release year: the first GPUs with TF32/BF16 tensor cores.
TENSOR_ERA_START = date(2020, 1, 1)


class UnknownChip(UserError):
    pass


@dataclass(frozen=True)
class ChipPeak:
    device: str  # the table entry used
    precision: str
    precision_rule: str  # "claimed", or the era rule that chose it
    flops_per_s: float
    source: str
    note: str = ""


def _tokens(name: str) -> set[str]:
    from kernels.peaks import _tokens as peak_tokens  # one tokeniser for both tables

    return peak_tokens(name)


def _era_precision(has_tensor_era_units: bool, has_fp32: bool) -> tuple[str, str]:
    if not has_fp32:
        return "bf16", "default: bf16, the chip has no FP32 figure (TPU matrix units multiply in bf16)"
    if has_tensor_era_units:
        return "bf16", "default: bf16, the chip's era (TF32/BF16 tensor units, 2020 on)"
    return "fp32", "default: fp32, the chip's era (before TF32/BF16 tensor units, mixed precision was opt-in)"


def _from_peak_table(name: str, precision: Optional[str]) -> Optional[ChipPeak]:
    from kernels.peaks import PEAK_TABLE, match_device

    matches = match_device(name)
    if not matches:
        # a name without its variant ("V100"): every entry it could be
        tokens = _tokens(name)
        matches = [spec for spec in PEAK_TABLE
                   if tokens and tokens <= spec.require | spec.any_of and not spec.exclude & tokens]
    if not matches:
        return None
    if precision is None:
        # the era rule on the first match (variants of one chip share an era)
        spec0 = matches[0]
        precision, rule = _era_precision(spec0.flops_per_s["tf32"] is not None and spec0.flops_per_s["bf16"] is not None,
                                         spec0.flops_per_s["fp32"] is not None)
    else:
        rule = "claimed"
    valued = [(m.flops_per_s[precision], m) for m in matches if m.flops_per_s[precision] is not None]
    if not valued:
        return None
    peak, spec = max(valued, key=lambda pair: pair[0])
    note = ""
    if len(matches) > 1:
        note = (f"{name!r} matches {len(matches)} variants ({', '.join(m.device for m in matches)}); the highest peak "
                "is used")
    if spec.device.startswith("Google Cloud TPU"):
        note = (note + "; " if note else "") + "a TPU here is a 4-chip Cloud TPU board (num_chips counts boards)"
    return ChipPeak(spec.device, precision, rule, float(peak), f"kernels/peaks.py: {spec.source}", note)


class EpochChips:
    """Epoch AI's chip dataset, read once (name -> row)."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, newline="", encoding="utf-8-sig") as f:
            self.rows = [r for r in csv.DictReader(f) if (r.get("Hardware name") or "").strip()]
        self.by_name = {r["Hardware name"].strip().lower(): r for r in self.rows}

    @staticmethod
    def _value(row: dict, precision: str) -> Optional[float]:
        if precision == "bf16" and not EpochChips._has_bf16(row):
            return None  # the shared tensor column is FP16 only on pre-Ampere GPUs
        for column in EPOCH_COLUMNS[precision]:
            try:
                v = float(row.get(column) or "nan")
            except ValueError:
                continue
            if v == v and v > 0:
                return v
        return None

    @staticmethod
    def _has_bf16(row: dict) -> bool:
        """BF16 units: GPUs from 2020 on (Ampere), and chips without an FP32 figure (TPUs)."""
        released = _release_date(row.get("Release date"))
        no_fp32 = not (row.get(EPOCH_COLUMNS["fp32"][0]) or "").strip()
        return no_fp32 or EpochChips._is_tpu(row) or (released is not None and released >= TENSOR_ERA_START)

    @staticmethod
    def _is_tpu(row: dict) -> bool:
        return (row.get("Type") or "").strip().upper() == "TPU"

    def find(self, name: str) -> list[dict]:
        exact = self.by_name.get(name.strip().lower())
        if exact is not None:
            return [exact]
        tokens = _tokens(name)
        if not tokens:
            return []
        return [r for r in self.rows if tokens <= _tokens(r["Hardware name"])]

    def peak(self, name: str, precision: Optional[str]) -> Optional[ChipPeak]:
        rows = self.find(name)
        if not rows:
            return None
        if precision is None:
            row0 = rows[0]
            released = _release_date(row0.get("Release date"))
            tensor_era = (released is not None and released >= TENSOR_ERA_START
                          and self._value(row0, "bf16") is not None)
            # a TPU multiplies in bf16 whatever FP32 figure the table gives (TPU v2: 3 TFLOP/s)
            precision, rule = _era_precision(tensor_era, self._value(row0, "fp32") is not None and not self._is_tpu(row0))
        else:
            rule = "claimed"
        valued = [(self._value(r, precision), r) for r in rows]
        valued = [(v, r) for v, r in valued if v is not None]
        if not valued:
            return None
        peak, row = max(valued, key=lambda pair: pair[0])
        note = f"{name!r} matches {len(rows)} Epoch chip rows; the highest peak is used" if len(rows) > 1 else ""
        return ChipPeak(row["Hardware name"].strip(), precision, rule, peak,
                        f"Epoch AI chip dataset ({self.path.name}): {row['Hardware name'].strip()}", note)


def _release_date(text: Optional[str]) -> Optional[date]:
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})", (text or "").strip())
    return date(*map(int, m.groups())) if m else None


def chip_peak(name: str, precision: Optional[str], epoch: Optional[EpochChips], *, prefer_epoch: bool = False) -> ChipPeak:
    """The dense peak of ``name`` at ``precision`` (None: the era rule); :class:`UnknownChip` if neither table has it."""
    lookups = [lambda: _from_peak_table(name, precision)]
    if epoch is not None:
        lookups.insert(0 if prefer_epoch else 1, lambda: epoch.peak(name, precision))
    for lookup in lookups:
        found = lookup()
        if found is not None:
            return found
    where = "kernels/peaks.py" + (f" or {epoch.path.name}" if epoch is not None else " (the Epoch chip table was not found)")
    what = f"at {precision}" if precision else "at any precision"
    raise UnknownChip(f"chip {name!r} has no peak {what} in {where}")


def fastest_peak(name: str, epoch: Optional[EpochChips], *, prefer_epoch: bool = False) -> Optional[ChipPeak]:
    """The chip's highest dense peak over every precision it has (None if it has none)."""
    found = []
    for precision in ("fp16", "bf16", "tf32", "fp32"):  # ties keep the first
        try:
            found.append(chip_peak(name, precision, epoch, prefer_epoch=prefer_epoch))
        except UnknownChip:
            continue
    return max(found, key=lambda p: p.flops_per_s, default=None)
