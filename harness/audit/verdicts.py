"""Verdicts on a claim: pure functions of ratios, with their thresholds in one place.

A ratio is claimed / counted. Conventions the audit recognises (Epoch AI's "Estimating training
compute" lists the same confusions, and Thompson et al. 2020 sec. 3 the 3 x forward rule):

- ``match``: the ratio is 1 within :data:`TOLERANCE`;
- ``mac_convention``: about 1/2, the claim counts multiply-adds where we count 2 FLOPs each;
- ``forward_only`` (training compute only): about 1/3, one forward pass per sample instead of
  forward + backward (3 x forward);
- ``mismatch``: anything else, the ratio says how far; ``unknown``: nothing claimed or counted.

Implied utilisation = training compute / (chips x peak x seconds): ``impossible`` above 1 (no chip
beats its datasheet peak), ``implausibly_low`` below :data:`LOW_UTILISATION` (large training runs
reach 20-60% MFU: Chowdhery et al. 2022 table 3; Epoch AI's utilisation notes), else ``plausible``.
"""
from __future__ import annotations

from typing import Optional

#: Relative tolerance of every convention test: |ratio / target - 1| <= 5%.
TOLERANCE = 0.05
#: Multiply-add convention: one MAC is 2 FLOPs, so a MAC count is half our FLOP count.
MAC_RATIO = 0.5
#: Forward-only training compute: 1 of the 3 forward-equivalents of a training step.
FORWARD_ONLY_RATIO = 1.0 / 3.0
#: Below this implied utilisation a claim is flagged ``implausibly_low``.
LOW_UTILISATION = 0.05

FWD_VERDICTS = ("match", "mac_convention", "mismatch", "unknown")
TRAIN_VERDICTS = ("match", "mac_convention", "forward_only", "mismatch", "unknown")
UTILISATION_VERDICTS = ("impossible", "implausibly_low", "plausible", "unknown")


def ratio(claimed: Optional[float], counted: Optional[float]) -> Optional[float]:
    if claimed is None or counted is None or counted <= 0:
        return None
    return claimed / counted


def near(value: float, target: float, tolerance: float = TOLERANCE) -> bool:
    return abs(value / target - 1.0) <= tolerance


def fwd_verdict(r: Optional[float], unit: Optional[str] = None) -> str:
    """Forward-pass verdict of claimed / counted FLOPs; ``unit`` is what the claim says it counts.

    A claim stated in MACs is converted before the ratio is taken (so it reads as ``match``);
    with the unit unknown, a ratio of about 1/2 is ``mac_convention``.
    """
    if r is None:
        return "unknown"
    if near(r, 1.0):
        return "match"
    if unit != "MAC" and near(r, MAC_RATIO):
        return "mac_convention"
    return "mismatch"


def train_verdict(r: Optional[float]) -> str:
    if r is None:
        return "unknown"
    if near(r, 1.0):
        return "match"
    if near(r, MAC_RATIO):
        return "mac_convention"
    if near(r, FORWARD_ONLY_RATIO):
        return "forward_only"
    return "mismatch"


def utilisation_verdict(u: Optional[float]) -> str:
    if u is None:
        return "unknown"
    if u > 1.0:
        return "impossible"
    if u < LOW_UTILISATION:
        return "implausibly_low"
    return "plausible"
