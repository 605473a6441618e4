"""Optimisers and learning-rate schedules, defined for every run length from one step up."""
from __future__ import annotations

import logging
import math
from typing import Any

import torch

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
#: torch's OneCycleLR needs a warm-up phase and an annealing phase of at least one step each.
MIN_ONECYCLE_STEPS = 3


def onecycle_pct_start(pct_start: float, total_steps: int) -> float:
    """The warm-up fraction torch's ``OneCycleLR`` can run for ``total_steps``.

    OneCycleLR ends its warm-up phase at step ``pct_start * total_steps - 1`` and divides by that
    phase's length, so ``pct_start * total_steps == 1`` raises ZeroDivisionError (5 steps at the
    default 0.2) and ``< 1`` gives an empty warm-up. The fraction is raised to make the warm-up
    at least one step, and capped so the annealing phase keeps at least one step. Long runs
    (``pct_start * total_steps >= 2``) are unchanged.
    """
    if total_steps < MIN_ONECYCLE_STEPS:
        raise ValueError(f"onecycle needs at least {MIN_ONECYCLE_STEPS} steps, got {total_steps}")
    return min(max(pct_start, 2.0 / total_steps), (total_steps - 1.0) / total_steps)


def build_optimizer(trainer: Any, model: torch.nn.Module, total_steps: int):
    """The optimiser and its per-step scheduler for ``trainer`` (a TrainerConfig) and ``total_steps``."""
    t = trainer
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                              nesterov=t.momentum > 0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    schedule = t.schedule
    if schedule == "onecycle" and total_steps < MIN_ONECYCLE_STEPS:
        log.info("schedule: onecycle needs %d steps; this %d-step run uses a constant lr=%g",
                 MIN_ONECYCLE_STEPS, total_steps, t.lr)
        schedule = "constant"
    if schedule == "onecycle":  # Smith & Topin 2017, "Super-Convergence"
        pct = onecycle_pct_start(t.warmup_fraction, total_steps)
        if not math.isclose(pct, t.warmup_fraction):
            log.info("schedule: onecycle warm-up fraction %.3g -> %.3g so both phases of this %d-step run "
                     "have a step", t.warmup_fraction, pct, total_steps)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=total_steps, pct_start=pct)
    elif schedule == "cosine":  # Loshchilov & Hutter 2017, SGDR, without restarts
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched
