"""One audit: read the claims, count, check the hardware, optionally measure, write the outputs."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.audit.audit import audit_claim
from harness.audit.builtin import epoch_claims, thompson_claims
from harness.audit.claims import Claim, ClaimError, Skipped, read_claims
from harness.audit.counting import Counter
from harness.audit.hardware import EpochChips
from harness.errors import UserError

log = logging.getLogger(__name__)

BUILTIN = {"thompson": thompson_claims, "epoch": epoch_claims}
EPOCH_CHIPS = Path("epoch") / "epoch_chip_dataset.csv"


@dataclass
class AuditOutput:
    rows: list[dict[str, Any]]
    skipped: list[Skipped]
    files: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _progress(enabled: bool):
    def wrap(items: list, desc: str):
        if not enabled:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, unit="claim", leave=False, dynamic_ncols=True)
    return wrap


def load_claims(cfg: Any) -> tuple[list[Claim], list[Skipped], bool]:
    """(claims, skipped rows, whether the set is Epoch's: its chips are looked up in Epoch's table first)."""
    name = str(cfg.claims)
    if name in BUILTIN:
        if cfg.literature_root is None:
            raise UserError(f"claims={name} reads the literature data: set literature_root=DIR (e.g. ../shared/data/literature)")
        claims = BUILTIN[name](Path(cfg.literature_root))
        seen: dict[str, int] = {}
        for c in claims:  # Epoch lists a few systems twice: keep both, named apart
            seen[c.claim_id] = seen.get(c.claim_id, 0) + 1
            if seen[c.claim_id] > 1:
                c.claim_id = f"{c.claim_id} (line {c.line})"
        return claims, [], name == "epoch"
    claims, skipped = read_claims(name, on_error=str(cfg.on_error))
    return claims, skipped, False


def run(cfg: Any) -> AuditOutput:
    from harness.audit import report

    started = time.perf_counter()
    if cfg.claims is None:
        raise UserError("claims= is required: a claims CSV (columns claim_id, model, ...), thompson or epoch")
    if str(cfg.on_error) not in ("raise", "skip"):
        raise UserError(f"on_error={cfg.on_error!r}; valid: raise, skip")
    out_dir = Path(cfg.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"out_dir={cfg.out_dir}: cannot create it: {e.strerror or e}") from None
    claims, skipped, is_epoch = load_claims(cfg)
    builtin = str(cfg.claims) in BUILTIN
    epoch_path = None if cfg.literature_root is None else Path(cfg.literature_root) / EPOCH_CHIPS
    epoch = EpochChips(epoch_path) if epoch_path is not None and epoch_path.is_file() else None
    if epoch is None:
        log.info("Epoch chip table not found (literature_root=%s): chips come from kernels/peaks.py only", cfg.literature_root)
    counter = Counter()
    progress = _progress(bool(cfg.progress))
    rows: list[dict[str, Any]] = []
    kept: list[Claim] = []
    for claim in progress(claims, "audit"):
        try:
            row = audit_claim(claim, counter, epoch, prefer_epoch_chips=is_epoch, unknown_chip_is_error=not builtin)
        except UserError as e:
            if str(cfg.on_error) != "skip":
                raise
            skipped.append(Skipped(claim.claim_id, claim.line, str(e)))
            continue
        if claim.extra.get("epoch_note"):
            row["notes"] = "; ".join(filter(None, (row.get("notes"), claim.extra["epoch_note"])))
        row.pop("epoch_note", None)
        rows.append(row)
        kept.append(claim)
    measured = bool(cfg.measure)
    if measured:
        from harness.audit.measured import Measurer, measure_rows
        from harness.device import resolve_device

        measurer = Measurer(resolve_device(str(cfg.device)), out_dir, steps=int(cfg.steps), warmup_steps=int(cfg.warmup_steps),
                            batch_size=int(cfg.batch_size), country_iso_code=str(cfg.country_iso_code),
                            use_codecarbon=bool(cfg.codecarbon), profiles_dir=str(cfg.hardware_profiles_dir))
        try:
            measure_rows(kept, rows, measurer, progress)
        finally:
            measurer.close()
    files = [out_dir / "audit.csv"]
    report.write_csv(rows, files[0])
    figs = report.figures(rows, out_dir)
    files += figs
    files.append(report.write_html(rows, skipped, figs, out_dir, f"Compute-claims audit: {cfg.claims}", measured))
    summary = report.summary_lines(rows, skipped, limit=int(cfg.summary_rows))
    return AuditOutput(rows, skipped, files, summary, time.perf_counter() - started)


__all__ = ["run", "AuditOutput", "ClaimError"]
