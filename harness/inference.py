"""Faster evaluation of the same function: inference-only rewrites of a trained model.

A workload's evaluation may run a rewritten copy of the model, provided the copy computes the
same outputs up to float rounding. The training model is never touched.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn

log = logging.getLogger(__name__)

FOLD_METHOD = ("BatchNorm folded into the convolution before it for evaluation (running statistics; "
               "torch.fx.experimental.optimization.fuse): the same function up to float rounding")


def fold_batchnorm(model: nn.Module, channels_last: bool = False) -> tuple[nn.Module, Optional[str]]:
    """An evaluation copy of ``model`` with every BatchNorm that follows a convolution (or linear
    layer) folded into it, and how it was made; ``(model, None)`` when there is nothing to fold or
    the model cannot be traced by torch.fx.

    In evaluation BatchNorm is the affine map ``y = gamma (x - mean) / sqrt(var + eps) + beta``
    with the running statistics, so it folds into the weights and bias of the layer before it
    (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
    Integer-Arithmetic-Only Inference", sec. 3.2): one pass over the activations less per layer.
    ``model`` must be in eval mode (its statistics frozen); it is left as it was.
    """
    from torch.fx.experimental.optimization import fuse

    if model.training:
        raise ValueError("fold_batchnorm needs the model in eval mode (model.eval()): training BatchNorm uses "
                         "the batch's statistics, which cannot be folded")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, None
    try:
        with torch.no_grad():
            folded = fuse(model, inplace=False)
    except Exception as exc:  # noqa: BLE001  (a model torch.fx cannot trace is evaluated as it is)
        log.debug("evaluation without BatchNorm folding: torch.fx could not trace %s (%s)", type(model).__name__, exc)
        return model, None
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    return folded.eval(), FOLD_METHOD
