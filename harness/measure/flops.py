"""FLOP counting, two independent ways.

Conventions (DESIGN.md): 1 multiply-add = 2 FLOPs everywhere except in fields named ``macs``.
- fvcore's ``FlopCountAnalysis`` counts one multiply-add as one "flop" (its docs: "we count one
  fused multiply-add as one flop"), so we store its raw count as MACs and double it.
- ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add (its conv and mm
  formulas are 2*m*n*k) and covers the backward pass, so it measures a whole training step.
- The paper's training compute (Thompson et al. 2020, following Amodei & Hernandez 2018,
  "AI and Compute") is 3 x forward FLOPs x samples: backward costs about twice the forward.
"""
from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

#: forward + backward = 3 x forward (Amodei & Hernandez 2018; Thompson et al. 2020, sec. 3).
TRAIN_FLOPS_PER_FORWARD_FLOP = 3


@dataclass
class ForwardCount:
    macs_per_sample: float
    unsupported_ops: dict[str, int] = field(default_factory=dict)

    @property
    def flops_per_sample(self) -> float:
        return 2.0 * self.macs_per_sample


def count_forward_macs(model: nn.Module, inputs: tuple, num_samples: int) -> ForwardCount:
    """fvcore multiply-adds of one forward pass in eval mode, per sample.

    Counted on a deep copy so the model's state (BatchNorm statistics, mode) is untouched.
    Ops fvcore has no handle for are returned with their call counts rather than silently dropped.
    """
    with warnings.catch_warnings():  # fvcore.nn's focal-loss module calls the deprecated torch.jit.script on import
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        analysis = FlopCountAnalysis(probe, inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        total = float(analysis.total())
        unsupported = dict(Counter(analysis.unsupported_ops()))
    return ForwardCount(total / num_samples, {k: int(v) for k, v in sorted(unsupported.items())})


def count_train_step_flops(model: nn.Module, step: Callable[[nn.Module], torch.Tensor], num_samples: int) -> float:
    """FLOPs of one forward + backward pass counted by ``FlopCounterMode``, per sample.

    ``step(model)`` must return the scalar loss. Runs on a deep copy in train mode, so neither
    the weights, gradients nor BatchNorm statistics of ``model`` change. The optimiser update is
    not included (it is O(parameters), not O(samples)).
    """
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = step(probe)
        loss.backward()
    return float(counter.get_total_flops()) / num_samples


def train_flops(fwd_flops_per_sample: float | None, samples: int) -> float | None:
    """The paper's training compute: 3 x forward FLOPs x samples seen."""
    if fwd_flops_per_sample is None:
        return None
    return TRAIN_FLOPS_PER_FORWARD_FLOP * fwd_flops_per_sample * samples
