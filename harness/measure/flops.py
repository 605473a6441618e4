"""FLOP counting, two independent ways.

Conventions (DESIGN.md): 1 multiply-add = 2 FLOPs everywhere except in fields named ``macs``.
- fvcore's ``FlopCountAnalysis`` counts one multiply-add as one "flop" (its docs: "we count one
  fused multiply-add as one flop"), so we store its raw count as MACs and double it.
- ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add (its conv and mm
  formulas are 2*m*n*k) and covers the backward pass, so it measures a whole training step.
- The paper's training compute (Thompson et al. 2020, following Amodei & Hernandez 2018,
  "AI and Compute") is 3 x forward FLOPs x samples: backward costs about twice the forward.

fvcore has no handle for recurrent layers, attention, most elementwise ops, and miscounts some
einsums; :mod:`harness.measure.flop_handles` supplies them (its docstring has the conventions),
so ``unsupported_ops`` stays empty for our models.

What ``FlopCounterMode`` sees of one forward pass (torch 2.14, checked on CPU, eval, no_grad):
- ``nn.LSTM`` runs as ``aten.mkldnn_rnn_layer`` when oneDNN is enabled, which has no formula:
  0 FLOPs. With oneDNN off, ``aten::lstm`` (CompositeImplicitAutograd) decomposes into per-step
  ``addmm``, which it counts. ``nn.GRU``/``nn.RNN`` and packed LSTMs decompose anyway. On CUDA
  the cuDNN kernel (``_cudnn_rnn``) likewise has no formula. So for models holding an
  ``nn.RNNBase`` both oneDNN and cuDNN are switched off while counting.
- ``F.scaled_dot_product_attention`` runs as ``aten._scaled_dot_product_flash_attention_for_cpu``,
  which has no formula (only the CUDA flash, efficient and cuDNN kernels have one): 0 FLOPs. We
  map it to torch's own ``sdpa_flop_count`` through ``custom_mapping``. (With E != Ev the math
  path runs instead, as bmm's, which it counts.)
- ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` in eval under no_grad take the
  "fast path", one fused kernel (``_native_multi_head_attention``,
  ``_transformer_encoder_layer_fwd``) with no formula: 0 FLOPs; fvcore has no handle either. Both
  counters run with ``torch.backends.mha`` fast path off, so they see the same linear + attention
  ops that training runs.
- Elementwise ops, norms and reductions are not counted at all, so fvcore's total, which counts
  them, is a few per cent above it (``forward_agreement``).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

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


@contextlib.contextmanager
def _decomposed_kernels(model: nn.Module) -> Iterator[None]:
    """Run ``model`` on the kernels both counters can see (see the module docstring).

    Turns off the MultiheadAttention/TransformerEncoder fast path and, for models with an RNN,
    oneDNN and cuDNN, restoring all three on exit. The arithmetic is the same; only which fused
    kernel carries it changes.
    """
    saved = (torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled)
    torch.backends.mha.set_fastpath_enabled(False)
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        # plain assignment, not the backends' flags() context managers, which also reset their
        # TF32/determinism settings (and warn about oneDNN TF32 on every call)
        torch.backends.mkldnn.enabled = False
        torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(saved[0])
        torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled = saved[1:]


def count_forward_macs(model: nn.Module, inputs: tuple, num_samples: int, copy_model: bool = True) -> ForwardCount:
    """fvcore multiply-adds of one forward pass in eval mode, per sample.

    Counted on a deep copy (unless ``copy_model`` is false: a model built only to be counted) so
    the model's state (BatchNorm statistics, mode) is untouched, with
    our handles for the ops fvcore lacks (:data:`harness.measure.flop_handles.FVCORE_HANDLES`).
    Ops nobody has a handle for are returned with their call counts rather than silently dropped.
    """
    with warnings.catch_warnings():  # fvcore.nn's focal-loss module calls the deprecated torch.jit.script on import
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    from harness.measure.flop_handles import FVCORE_HANDLES

    probe = (copy.deepcopy(model) if copy_model else model).eval()
    with torch.no_grad(), _decomposed_kernels(probe):
        analysis = FlopCountAnalysis(probe, inputs).set_op_handle(**FVCORE_HANDLES)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        total = float(analysis.total())
        unsupported = dict(Counter(analysis.unsupported_ops()))
    return ForwardCount(total / num_samples, {k: int(v) for k, v in sorted(unsupported.items())})


def _flop_counter_mode():
    """``FlopCounterMode`` that also counts the CPU flash-attention kernel, with torch's formula."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

    custom = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None and cpu_flash not in flop_registry:
        # (query, key, value, dropout_p, is_causal, *, attn_mask, scale): same (B, heads, L, E)
        # layout as the CUDA flash kernel that torch's sdpa_flop formula covers
        def cpu_flash_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

        custom[cpu_flash] = cpu_flash_flop
    return FlopCounterMode(display=False, custom_mapping=custom)


def count_forward_flops_torch(model: nn.Module, inputs: tuple, copy_model: bool = True) -> float:
    """FLOPs (2 per multiply-add) of ONE forward pass, counted by ``FlopCounterMode``.

    Eval mode, no_grad, on a deep copy (unless ``copy_model`` is false), like
    :func:`count_forward_macs`; not per sample.
    """
    probe = (copy.deepcopy(model) if copy_model else model).eval()
    counter = _flop_counter_mode()
    with torch.no_grad(), _decomposed_kernels(probe), counter:
        probe(*inputs)
    return float(counter.get_total_flops())


def forward_agreement(model: nn.Module, inputs: tuple) -> float | None:
    """fvcore FLOPs (2 x MACs) / ``FlopCounterMode`` FLOPs of one forward pass.

    Above 1 by what fvcore counts and ``FlopCounterMode`` does not (elementwise ops, norms,
    reductions). None when ``FlopCounterMode`` counts nothing, rather than a division by zero.
    """
    torch_flops = count_forward_flops_torch(model, inputs)
    if not torch_flops:
        return None
    return count_forward_macs(model, inputs, num_samples=1).flops_per_sample / torch_flops


def count_train_step_flops(model: nn.Module, step: Callable[[nn.Module], torch.Tensor], num_samples: int) -> float:
    """FLOPs of one forward + backward pass counted by ``FlopCounterMode``, per sample.

    ``step(model)`` must return the scalar loss. Runs on a deep copy in train mode, so neither
    the weights, gradients nor BatchNorm statistics of ``model`` change. The optimiser update is
    not included (it is O(parameters), not O(samples)).
    """
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with _decomposed_kernels(probe), counter:  # oneDNN's LSTM kernel has no formula: it would count 0
        loss = step(probe)
        loss.backward()
    return float(counter.get_total_flops()) / num_samples


def train_flops(fwd_flops_per_sample: float | None, samples: int) -> float | None:
    """The paper's training compute: 3 x forward FLOPs x samples seen."""
    if fwd_flops_per_sample is None:
        return None
    return TRAIN_FLOPS_PER_FORWARD_FLOP * fwd_flops_per_sample * samples
