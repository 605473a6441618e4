"""The claims CSV: one published compute claim per row, validated cell by cell.

Only ``claim_id`` and ``model`` are required; an empty cell is unknown (None), never 0. A bad
cell is a :class:`ClaimError` naming the file, the row (its line in the file and its
``claim_id``) and the column; :func:`read_claims` either raises it or, with ``on_error=skip``,
records the row as skipped with that reason and goes on.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.errors import DataNotFoundError, UserError

#: Every column the format knows (README, "Auditing published compute claims").
COLUMNS = ("claim_id", "source", "model", "model_args", "input", "claimed_params", "claimed_fwd_flops",
           "claimed_fwd_unit", "train_samples", "epochs", "dataset_size", "claimed_train_flops", "hardware",
           "num_chips", "train_hours", "precision", "batch_size")
REQUIRED = ("claim_id", "model")
#: Model kinds: ``kind:name``.
MODEL_KINDS = ("torchvision", "computelimits", "transformers")
FWD_UNITS = ("FLOP", "MAC")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
DEFAULT_IMAGE_INPUT = (3, 224, 224)
DEFAULT_SEQ_LEN = 512


class ClaimError(UserError):
    """One bad cell (or row): the message names the file, row and column."""


@dataclass(frozen=True)
class InputSpec:
    """What one sample is: an image ``(C, H, W)`` or a text sequence of ``seq_len`` tokens."""

    image: Optional[tuple[int, int, int]] = None
    seq_len: Optional[int] = None

    @property
    def text(self) -> str:
        return f"seq={self.seq_len}" if self.seq_len is not None else "x".join(map(str, self.image or ()))


@dataclass
class Claim:
    """One row. ``model`` is None for claims that build nothing (the Epoch set)."""

    claim_id: str
    line: int
    source: Optional[str] = None
    model: Optional[str] = None
    model_args: dict[str, Any] = field(default_factory=dict)
    input: Optional[InputSpec] = None
    claimed_params: Optional[float] = None
    claimed_fwd_flops: Optional[float] = None
    claimed_fwd_unit: Optional[str] = None
    train_samples: Optional[float] = None
    epochs: Optional[float] = None
    dataset_size: Optional[float] = None
    claimed_train_flops: Optional[float] = None
    hardware: Optional[str] = None
    num_chips: Optional[float] = None
    train_hours: Optional[float] = None
    precision: Optional[str] = None
    batch_size: Optional[int] = None
    #: Set by the built-in sets: extra columns carried into audit.csv (year, benchmark, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_kind(self) -> Optional[str]:
        return None if self.model is None else self.model.split(":", 1)[0]

    @property
    def model_name(self) -> Optional[str]:
        return None if self.model is None else self.model.split(":", 1)[1]

    @property
    def samples(self) -> Optional[float]:
        """Samples processed in training: ``train_samples``, else ``epochs`` x ``dataset_size``."""
        if self.train_samples is not None:
            return self.train_samples
        if self.epochs is not None and self.dataset_size is not None:
            return self.epochs * self.dataset_size
        return None


@dataclass
class Skipped:
    claim_id: str
    line: int
    reason: str


def _blank(value: Optional[str]) -> bool:
    return value is None or value.strip() == ""


def _where(path: Path, line: int, claim_id: Optional[str], column: str) -> str:
    row = f"row at line {line}" + (f" (claim_id {claim_id!r})" if claim_id else "")
    return f"{path.name}: {row}, column {column!r}"


def _number(raw: Optional[str], where: str, *, integer: bool = False, positive: bool = True) -> Optional[float]:
    if _blank(raw):
        return None
    text = raw.strip().replace("_", "")
    try:
        value = float(text)
    except ValueError:
        raise ClaimError(f"{where}: {raw.strip()!r} is not a number (leave the cell empty if unknown)") from None
    if not math.isfinite(value):
        raise ClaimError(f"{where}: {raw.strip()!r} is not a finite number")
    if positive and value <= 0:
        raise ClaimError(f"{where}: {raw.strip()} must be positive (an unknown count is an empty cell, never 0)")
    if integer:
        if value != int(value):
            raise ClaimError(f"{where}: {raw.strip()} must be a whole number")
        return int(value)
    return value


def parse_input(raw: Optional[str], where: str) -> InputSpec:
    """``CxHxW`` (default ``3x224x224``) or ``seq=N``."""
    if _blank(raw):
        return InputSpec(image=DEFAULT_IMAGE_INPUT)
    text = raw.strip().lower()
    m = re.fullmatch(r"seq\s*=\s*(\d+)", text)
    if m and int(m.group(1)) > 0:
        return InputSpec(seq_len=int(m.group(1)))
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text)
    if m and all(int(g) > 0 for g in m.groups()):
        c, h, w = (int(g) for g in m.groups())
        return InputSpec(image=(c, h, w))
    raise ClaimError(f"{where}: {raw.strip()!r} is not an input; use CxHxW (e.g. 3x224x224) or seq=N (e.g. seq=512)")


def parse_model(raw: Optional[str], where: str) -> str:
    text = (raw or "").strip()
    kind, sep, name = text.partition(":")
    if not sep or kind not in MODEL_KINDS or not name.strip():
        raise ClaimError(f"{where}: {text!r} is not a model; use torchvision:<builder>, computelimits:<registry name> "
                         "or transformers:<ConfigClass>")
    return f"{kind}:{name.strip()}"


def parse_row(row: dict[str, Optional[str]], path: Path, line: int) -> Claim:
    """One CSV row as a :class:`Claim`; raises :class:`ClaimError` on the first bad cell."""
    claim_id = (row.get("claim_id") or "").strip()
    if not claim_id:
        raise ClaimError(f"{_where(path, line, None, 'claim_id')}: empty; every row needs a unique claim_id")

    def at(column: str) -> str:
        return _where(path, line, claim_id, column)

    if _blank(row.get("model")):
        raise ClaimError(f"{at('model')}: empty; say what to build (torchvision:resnet50, ...)")
    claim = Claim(claim_id=claim_id, line=line, model=parse_model(row.get("model"), at("model")))
    claim.source = None if _blank(row.get("source")) else row["source"].strip()
    raw_args = row.get("model_args")
    if not _blank(raw_args):
        try:
            args = json.loads(raw_args)
        except json.JSONDecodeError as e:
            raise ClaimError(f"{at('model_args')}: not valid JSON ({e.msg} at character {e.pos}): {raw_args.strip()!r}") from None
        if not isinstance(args, dict):
            raise ClaimError(f"{at('model_args')}: must be a JSON object such as {{\"depth\": 50}}, got {raw_args.strip()!r}")
        claim.model_args = args
    claim.input = parse_input(row.get("input"), at("input"))
    for column in ("claimed_params", "claimed_fwd_flops", "train_samples", "epochs", "dataset_size",
                   "claimed_train_flops", "num_chips", "train_hours"):
        setattr(claim, column, _number(row.get(column), at(column)))
    claim.batch_size = _number(row.get("batch_size"), at("batch_size"), integer=True)
    unit = row.get("claimed_fwd_unit")
    if not _blank(unit):
        found = {u.lower(): u for u in FWD_UNITS}.get(unit.strip().lower().rstrip("s"))
        if found is None:
            raise ClaimError(f"{at('claimed_fwd_unit')}: {unit.strip()!r}; valid: {', '.join(FWD_UNITS)} or empty (unknown)")
        claim.claimed_fwd_unit = found
    precision = row.get("precision")
    if not _blank(precision):
        if precision.strip().lower() not in PRECISIONS:
            raise ClaimError(f"{at('precision')}: {precision.strip()!r}; valid: {', '.join(PRECISIONS)} or empty")
        claim.precision = precision.strip().lower()
    claim.hardware = None if _blank(row.get("hardware")) else row["hardware"].strip()
    return claim


def read_claims(path: str | Path, on_error: str = "raise") -> tuple[list[Claim], list[Skipped]]:
    """The claims of a CSV file, and (with ``on_error=skip``) the rows left out and why."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"claims={path}: no such file (a CSV with at least the columns claim_id and model)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ClaimError(f"{path.name}: cannot be read as a UTF-8 CSV: {e}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ClaimError(f"{path.name}: missing column(s) {', '.join(missing)} (header: {', '.join(header) or 'empty'})")
    unknown = [c for c in header if c and c not in COLUMNS]
    if unknown:
        raise ClaimError(f"{path.name}: unknown column(s) {', '.join(unknown)}; valid: {', '.join(COLUMNS)}")
    claims: list[Claim] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if all(_blank(v) for v in row.values() if isinstance(v, str) or v is None):
            continue
        try:
            claim = parse_row(row, path, line)
            if claim.claim_id in seen:
                raise ClaimError(f"{_where(path, line, claim.claim_id, 'claim_id')}: duplicate of the row at line "
                                 f"{seen[claim.claim_id]}")
        except ClaimError as e:
            if on_error != "skip":
                raise
            skipped.append(Skipped((row.get("claim_id") or "").strip(), line, str(e)))
            continue
        seen[claim.claim_id] = line
        claims.append(claim)
    return claims, skipped
