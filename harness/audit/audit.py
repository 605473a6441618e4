"""One claim -> one ``audit.csv`` row: counts, ratios, verdicts, hardware-time compute and notes."""
from __future__ import annotations

from typing import Any, Optional

from harness.audit import verdicts as v
from harness.audit.claims import Claim
from harness.audit.counting import Count, Counter
from harness.audit.hardware import EpochChips, UnknownChip, chip_peak, fastest_peak
from harness.measure.flops import TRAIN_FLOPS_PER_FORWARD_FLOP

#: Training compute of a dense Transformer: 6 FLOPs per parameter per token (Kaplan et al. 2020,
#: sec. 2.1: 2N forward + 4N backward).
SIX_ND = 6

#: audit.csv's columns, in order (the README documents each).
COLUMNS = (
    "claim_id", "source", "model", "input", "counted_params", "claimed_params", "params_ratio",
    "counted_fwd_flops", "counted_fwd_flops_fcm", "claimed_fwd_flops", "claimed_fwd_unit", "fwd_flops_ratio",
    "fwd_verdict", "train_samples", "counted_train_flops", "counted_train_flops_6nd", "claimed_train_flops",
    "train_flops_ratio", "train_verdict", "hardware", "hardware_matched", "num_chips", "train_hours", "precision",
    "precision_rule", "hardware_peak_flops_per_s", "hardware_peak_source", "hardware_time_flops",
    "implied_utilisation", "utilisation_basis", "utilisation_verdict", "fastest_precision",
    "implied_utilisation_fastest", "count_seconds", "notes",
)


def audit_claim(claim: Claim, counter: Optional[Counter], epoch: Optional[EpochChips], *,
                prefer_epoch_chips: bool = False, unknown_chip_is_error: bool = True) -> dict[str, Any]:
    """The audit row of one claim. Raises what building and counting raise, and (unless
    ``unknown_chip_is_error`` is false: the built-in sets note it instead) an unknown chip."""
    notes: list[str] = []
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(claim_id=claim.claim_id, source=claim.source, model=claim.model,
               input=claim.input.text if claim.input and claim.model else None,
               claimed_params=claim.claimed_params, claimed_fwd_flops=claim.claimed_fwd_flops,
               claimed_fwd_unit=claim.claimed_fwd_unit, claimed_train_flops=claim.claimed_train_flops,
               hardware=claim.hardware, num_chips=claim.num_chips, train_hours=claim.train_hours, **claim.extra)
    count: Optional[Count] = counter.count(claim) if (counter is not None and claim.model) else None
    samples = claim.samples
    row["train_samples"] = samples
    if count is not None:
        row.update(counted_params=count.params, counted_fwd_flops=count.fwd_flops, counted_fwd_flops_fcm=count.fwd_flops_fcm,
                   count_seconds=round(count.seconds, 3))
        if count.unsupported_ops:
            notes.append(f"fvcore could not count {', '.join(count.unsupported_ops)}")
        row["params_ratio"] = v.ratio(claim.claimed_params, count.params)
        claimed_fwd = claim.claimed_fwd_flops
        if claimed_fwd is not None and claim.claimed_fwd_unit == "MAC":
            claimed_fwd *= 2.0
            notes.append("claimed forward stated in MACs: doubled to FLOPs before the ratio")
        row["fwd_flops_ratio"] = v.ratio(claimed_fwd, count.fwd_flops)
        if samples is not None:
            row["counted_train_flops"] = TRAIN_FLOPS_PER_FORWARD_FLOP * count.fwd_flops * samples
            if count.is_transformer and count.tokens_per_sample:
                row["counted_train_flops_6nd"] = SIX_ND * count.params * samples * count.tokens_per_sample
        row["train_flops_ratio"] = v.ratio(claim.claimed_train_flops, row["counted_train_flops"])
    row["fwd_verdict"] = v.fwd_verdict(row["fwd_flops_ratio"], claim.claimed_fwd_unit)
    row["train_verdict"] = v.train_verdict(row["train_flops_ratio"])
    if row["fwd_verdict"] == "mac_convention":
        notes.append("the forward claim is about half the counted FLOPs: it counts multiply-adds")
    if row["train_verdict"] == "forward_only":
        notes.append("the training claim is about one forward pass per sample, not forward + backward")

    # hardware x time
    if claim.hardware:
        try:
            peak = chip_peak(claim.hardware, claim.precision, epoch, prefer_epoch=prefer_epoch_chips)
        except UnknownChip as e:
            if unknown_chip_is_error:
                raise UnknownChip(f"claim {claim.claim_id!r} (line {claim.line}), column 'hardware': {e}") from None
            peak = None
            if claim.precision is not None:  # a built-in set's precision the chip has no figure for
                try:
                    peak = chip_peak(claim.hardware, None, epoch, prefer_epoch=prefer_epoch_chips)
                    notes.append(f"{e}: the chip's era precision is used instead")
                except UnknownChip:
                    peak = None
            if peak is None:
                notes.append(str(e))
        if peak is not None:
            row.update(hardware_matched=peak.device, precision=peak.precision, precision_rule=peak.precision_rule,
                       hardware_peak_flops_per_s=peak.flops_per_s, hardware_peak_source=peak.source)
            if peak.note:
                notes.append(peak.note)
            if claim.num_chips is not None and claim.train_hours is not None:
                row["hardware_time_flops"] = claim.num_chips * peak.flops_per_s * claim.train_hours * 3600.0
    compute, basis = (claim.claimed_train_flops, "claimed") if claim.claimed_train_flops is not None else \
        (row["counted_train_flops"], "counted")
    row["implied_utilisation"] = v.ratio(compute, row["hardware_time_flops"])
    row["utilisation_basis"] = basis if row["implied_utilisation"] is not None else None
    row["utilisation_verdict"] = v.utilisation_verdict(row["implied_utilisation"])
    if row["utilisation_verdict"] == "impossible":
        notes.append(f"{basis} training compute is {row['implied_utilisation']:.2f}x what the chips could do at "
                     f"{row['precision']} peak in the stated time")
        fastest = fastest_peak(claim.hardware, epoch, prefer_epoch=prefer_epoch_chips)
        if fastest is not None and fastest.flops_per_s > row["hardware_peak_flops_per_s"]:
            u = compute / (claim.num_chips * fastest.flops_per_s * claim.train_hours * 3600.0)
            row.update(fastest_precision=fastest.precision, implied_utilisation_fastest=u)
            if u <= 1.0 and claim.precision is None:
                notes.append(f"at the chip's {fastest.precision} peak it is {u:.0%} ({v.utilisation_verdict(u)}): possible "
                             f"only if the run used {fastest.precision}; set precision={fastest.precision} if the paper says so")
    row["notes"] = "; ".join(notes) or None
    return row
