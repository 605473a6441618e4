"""fvcore op handles for the ops fvcore 0.1.5 leaves unsupported, so no arithmetic is dropped.

Every handle has fvcore's signature ``(inputs, outputs) -> number`` over ``torch._C.Value`` lists
and counts in fvcore's unit: one multiply-add is one (``fvcore/nn/flop_count.py``: "We count one
fused multiply-add as one flop"); :mod:`harness.measure.flops` stores that as MACs and doubles it.
``FVCORE_HANDLES`` maps op names to handles, ``None`` meaning "does no arithmetic": fvcore's
``JitModelAnalysis.set_op_handle`` adds those to its ignore set, the same semantics as its own
``_IGNORED_OPS`` (``fvcore/nn/jit_analysis.py``), so they are neither counted nor reported.

Conventions, all in fvcore's unit:

- Matrix products (RNN cells, attention, einsum, ``baddbmm``): one per multiply-add, bias adds
  folded in, as fvcore's ``addmm_flop_jit``/``linear_flop_jit``/``conv_flop_jit`` do.
- Elementwise arithmetic (``add``, ``mul``, ``sigmoid``, ``gelu``, ``softmax`` ...): 1 per output
  element, fvcore's own ``elementwise_flop_counter(0, 1)`` convention (its handle for
  ``aten::upsample_nearest2d``). So a plain add becomes 2 FLOPs after doubling (an upper bound),
  and a fused op such as softmax (exp, sum, divide) 2 FLOPs per element (a lower bound).
- Reductions and average pooling (``mean``, ``sum``, ``logsumexp``, ``avg_pool2d``): 1 per input
  element, fvcore's ``elementwise_flop_counter(1, 0)`` convention (its handle for
  ``aten::adaptive_avg_pool2d``).
- Comparisons and selection (``max_pool2d``, ``hardtanh``, ``where``, ``lt``...): 0, as fvcore
  already treats ``aten::relu``, ``aten::max``, ``aten::clamp`` and ``aten::masked_fill``
  (``_IGNORED_OPS``). Data movement (views, copies, ``cat``, ``embedding`` lookups, ``flip``,
  ``index_select``, sequence packing): 0.
- Integer and boolean tensors (index and size arithmetic, masks): 0, being no floating point.

``FlopCounterMode`` counts only matrix products, convolutions and attention, so the elementwise
and reduction counts here are what makes fvcore's total exceed it (by a few per cent on our
models; see ``tests/test_flop_handles.py``).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

with warnings.catch_warnings():  # fvcore.nn's focal-loss module calls the deprecated torch.jit.script on import
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn.jit_handles import get_shape, norm_flop_counter

Handle = Callable[[list, list], int]


def _shape(value: Any) -> list[int] | None:
    """Shape of a tensor value; None for a non-tensor (a Python scalar in the trace)."""
    if value.type().kind() != "TensorType":
        return None
    shape = get_shape(value)
    if shape is None:  # a tensor the trace has no sizes for: refuse rather than count 0
        raise ValueError(f"no static shape for {value.debugName()} ({value.node().kind()})")
    return shape


#: Integer and boolean dtypes (``torch._C.TensorType.scalarType()`` names): their arithmetic is
#: not floating point, e.g. the size arithmetic (``head_dim * num_heads``) a trace records as ops
#: on 0-dim int64 tensors inside ``F.multi_head_attention_forward``.
_NOT_FLOATING = {"Bool", "Byte", "Char", "Short", "Int", "Long", "UInt16", "UInt32", "UInt64"}


def _numel(value: Any) -> int:
    """Floating-point elements of a value: 0 for a Python scalar or an integer/bool tensor."""
    shape = _shape(value)
    if shape is None or value.type().scalarType() in _NOT_FLOATING:
        return 0
    return math.prod(shape)


def _list_items(value: Any) -> list:
    """The values a traced ``prim::ListConstruct`` (``Tensor[]`` argument) was built from."""
    return list(value.node().inputs())


# ---------------------------------------------------------------------------------------------
# Elementwise and reductions
# ---------------------------------------------------------------------------------------------

def per_output_element(inputs: list, outputs: list) -> int:
    """1 per output element: fvcore's ``elementwise_flop_counter(0, 1)``, safe for scalars."""
    return _numel(outputs[0])


def per_input_element(inputs: list, outputs: list) -> int:
    """1 per element of the first input: fvcore's ``elementwise_flop_counter(1, 0)``."""
    return _numel(inputs[0])


# ---------------------------------------------------------------------------------------------
# Batched matrix products
# ---------------------------------------------------------------------------------------------

def baddbmm_macs(inputs: list, outputs: list) -> int:
    """``beta*self + alpha*(b1 @ b2)``: the bmm's (n, m, k) x (n, k, p) = n*m*k*p multiply-adds.

    fvcore has ``bmm_flop_jit`` but no baddbmm handle; ``F.multi_head_attention_forward`` emits
    baddbmm when it has an attention mask and returns weights. The add is folded into the MACs.
    """
    n, m, k = _shape(inputs[1])
    return n * m * k * _shape(inputs[2])[-1]


def sdpa_macs(inputs: list, outputs: list) -> int:
    """Attention ``softmax(Q Kᵀ) V``: B*heads*Lq*Lk*(E + Ev) multiply-adds.

    Q Kᵀ: each of the B*heads*Lq*Lk scores is an E-long dot product; attn V: each of the
    B*heads*Lq*Ev outputs an Lk-long one. The same two bmm's as ``sdpa_flop_count`` in
    ``torch/utils/flop_counter.py`` (which counts 2 per multiply-add). Like it, the full Lq x Lk
    matrix is counted even with ``is_causal`` or a mask, and softmax and scaling are not counted.
    Leading dims are Q's and K's broadcast, right-aligned: for grouped-query attention K and V
    have fewer heads than Q (a divisor) and each query head still does its own products, so the
    larger of the two sizes is taken. Q, K, V are the first three inputs of
    ``aten::scaled_dot_product_attention`` and of every ``aten::_scaled_dot_product_*`` kernel.
    """
    q, k, v = (_shape(x) for x in inputs[:3])
    lq, e = q[-2:]
    lk, ev = k[-2], v[-1]
    lead_q, lead_k = q[:-2], k[:-2]
    width = max(len(lead_q), len(lead_k))
    lead_q = [1] * (width - len(lead_q)) + lead_q
    lead_k = [1] * (width - len(lead_k)) + lead_k
    batch_heads = math.prod(max(a, b) for a, b in zip(lead_q, lead_k))
    return batch_heads * lq * lk * (e + ev)


# ---------------------------------------------------------------------------------------------
# einsum
# ---------------------------------------------------------------------------------------------
# fvcore's ``einsum_flop_jit`` (fvcore/nn/jit_handles.py) special-cases "abc,abd->acd" and
# "abc,adc->adb" and otherwise parses ``np.einsum_path(..., optimize="optimal")``'s report,
# "Optimized FLOP count" / 2. Checked against numpy 2.4's ``_flop_count`` (numpy/_core/
# einsumfunc.py): a contraction costs size * (max(1, terms - 1) + inner), so the /2 is right only
# when indices are summed. It halves products without a summed index ("i,j->ij": 6 for 12
# multiplies, measured) and charges half a unit per element to a pure transpose ("ij->ji"); the
# report prints "%.3e", so large counts are rounded to 4 significant digits; it allocates a real
# ``np.zeros`` of every operand's shape; and it uses numpy's optimal order, not the order torch ran.
# So we register a handle that replays what ATen's ``einsum`` executes
# (aten/src/ATen/native/Linear.cpp): operands are contracted pairwise, left to right, the result
# put first, or in the traced ``path`` (opt_einsum's format: the pair's result goes last). Before
# each pair, labels that only one of the two holds and nothing later needs are summed out of it
# (``a.sum``); then ``sumproduct_pair`` multiplies over every remaining label (a bmm, or a plain
# mul when nothing is summed). A single operand is only summed (``ops[0].sum``).


def _einsum_operands(equation: str, shapes: list[list[int]]) -> tuple[list[dict[str, int]], set[str]]:
    """Each operand as {label: size} (size-1 labels dropped: they broadcast), and the output labels.

    The ellipsis becomes fresh labels, right-aligned across operands as ATen aligns them;
    without "->" the output is the ellipsis plus the labels seen once (ATen's implicit mode).
    """
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    ell_ndims = [len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t]
    fresh = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in equation]
    ell = "".join(fresh[: max(ell_ndims, default=0)])
    operands = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            n = len(shape) - (len(term) - 3)
            term = term.replace("...", ell[len(ell) - n:])
        # a repeated label takes the diagonal: one entry, no arithmetic
        operands.append({label: size for label, size in zip(term, shape) if size != 1})
    if arrow:
        out = set(rhs.replace("...", ell))
    else:
        out = set(ell) | {c for c in lhs if c.isalpha() and lhs.count(c) == 1}
    return operands, out


def einsum_macs_of(equation: str, shapes: list[list[int]], path: list[int] | None = None) -> int:
    """Multiply-adds ATen's ``einsum`` executes for ``equation`` over operands of ``shapes``.

    Pairwise products: 1 per element of the product over all labels left in the pair (a bmm's
    m*n*k, or a mul's output). Summing a label out of one operand: 1 per element summed.
    """
    ops, out = _einsum_operands(equation, shapes)
    if len(ops) == 1:
        labels = ops[0]
        return math.prod(labels.values()) if set(labels) - out else 0
    pairs = [tuple(path[i:i + 2]) for i in range(0, len(path), 2)] if path else None
    macs = 0
    while len(ops) > 1:
        i, j = sorted(pairs.pop(0)) if pairs else (0, 1)
        a, b = ops[i], ops[j]
        del ops[j], ops[i]
        needed = out.union(*ops)
        reduced = []
        for mine, other in ((a, b), (b, a)):
            lone = {c for c in mine if c not in needed and c not in other}
            if lone:
                macs += math.prod(mine.values())
                mine = {c: s for c, s in mine.items() if c not in lone}
            reduced.append(mine)
        product = {**reduced[0], **reduced[1]}
        macs += math.prod(product.values())
        result = {c: s for c, s in product.items() if c in needed}
        if pairs is None:
            ops.insert(0, result)
        else:
            ops.append(result)
    return macs


def einsum_macs(inputs: list, outputs: list) -> int:
    """fvcore handle for ``aten::einsum(equation, Tensor[] tensors, int[]? path)``."""
    equation = inputs[0].toIValue()
    shapes = [_shape(t) for t in _list_items(inputs[1])]
    path = inputs[2].toIValue() if len(inputs) > 2 else None
    return einsum_macs_of(equation, shapes, list(path) if path else None)


# ---------------------------------------------------------------------------------------------
# Recurrent layers
# ---------------------------------------------------------------------------------------------
#: Gate count of each recurrent op: LSTM i, f, g, o; GRU r, z, n; Elman RNN one
#: (equations in the torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN docs).
RNN_GATES = {"aten::lstm": 4, "aten::gru": 3, "aten::rnn_tanh": 1, "aten::rnn_relu": 1}


def rnn_handle(op: str) -> Handle:
    """Handle for ``op`` (a key of ``RNN_GATES``), both its overloads.

    Per token, per layer, per direction: gates * H * (input + H_out) multiply-adds, the W_ih x and
    W_hh h products of the cell equations (torch.nn.LSTM docs), plus H_out * H for an LSTM's
    projection W_hr (``proj_size``, H_out = proj_size, else H_out = H). Layer 0's input is the
    feature size; deeper layers read both directions' outputs, directions * H_out. Bias adds are
    folded in (as fvcore's linear) and the gate nonlinearities and products (for an LSTM about
    9*H per token: 3 sigmoid, 2 tanh, 3 mul, 1 add) are not counted, as ``FlopCounterMode``
    counts only the cells' addmm's.

    Overloads (``outputs[0].node().schema()``):
    - ``.input(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)``
      input is (T, B, F), (B, T, F) with batch_first, or unbatched (T, F): tokens = numel / F in
      every layout, so ``batch_first`` does not change the count and is not read.
    - ``.data(data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional)``
      for a ``PackedSequence``: data is (total tokens, F), padding excluded.
    Sizes: H from the hidden state (an LSTM's cell state c0: (layers*dirs, B, H)); H_out from the
    output's last dim / dirs.
    """
    gates = RNN_GATES[op]

    def handle(inputs: list, outputs: list) -> int:
        packed = ".data(" in outputs[0].node().schema()
        first = 1 if packed else 0  # index shift of hx and the constants in the .data overload
        hx = inputs[1 + first]
        num_layers = inputs[4 + first].toIValue()
        directions = 2 if inputs[7 + first].toIValue() else 1
        x = _shape(inputs[0])
        features, tokens = x[-1], math.prod(x[:-1])
        h_out = _shape(outputs[0])[-1] // directions
        hidden = _shape(_list_items(hx)[1])[-1] if op == "aten::lstm" else h_out
        projection = h_out * hidden if hidden != h_out else 0
        per_token = 0
        for layer in range(num_layers):
            layer_in = features if layer == 0 else directions * h_out
            per_token += directions * (gates * hidden * (layer_in + h_out) + projection)
        return tokens * per_token

    return handle


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

#: Elementwise arithmetic: 1 per output element (in-place forms alike).
ELEMENTWISE_OPS = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "reciprocal",
    "pow", "square", "sqrt", "rsqrt", "exp", "log", "erf",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "silu", "silu_", "hardswish", "hardswish_",
    "hardsigmoid", "leaky_relu", "leaky_relu_", "elu", "elu_", "softplus", "mish",
    "softmax", "log_softmax", "_softmax", "_log_softmax",
)

#: Reductions and average pooling: 1 per input element.
REDUCTION_OPS = (
    "sum", "mean", "logsumexp",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool3d",
)

#: Ops that do no arithmetic, beyond fvcore's own ``_IGNORED_OPS``: counted 0, not reported.
NO_ARITHMETIC_OPS = (
    # lookups and indexing: reads, no arithmetic
    "embedding", "index_select", "flip", "take_along_dim", "masked_select", "index_add",
    # data movement, shape and creation
    "clone", "unflatten", "repeat", "repeat_interleave", "expand_as", "view_as", "reshape_as",
    "movedim", "swapaxes", "pad", "pixel_shuffle", "unfold", "ones_like", "empty_like",
    "scalar_tensor", "tensor", "triu", "tril", "lift_fresh", "alias",
    # sequence packing: index bookkeeping of PackedSequence
    "_pack_padded_sequence", "_pad_packed_sequence",
    # comparisons and selection, as fvcore ignores relu, max, clamp and masked_fill
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "adaptive_max_pool2d",
    "hardtanh", "hardtanh_", "relu6", "where", "lt", "le", "ne", "min", "amax", "amin", "argmax",
    "argmin", "topk", "sort", "masked_fill_", "any", "all", "logical_not", "logical_and",
    "logical_or", "isnan",
    # dropout is the identity in eval mode, where we count (fvcore ignores aten::dropout)
    "dropout_", "feature_dropout", "alpha_dropout",
)

#: Attention kernels tracing may record instead of the composite op (CPU flash, CUDA flash,
#: memory-efficient, cuDNN, math, and the backend hook), all taking (query, key, value, ...).
SDPA_OPS = (
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_attention_math", "_scaled_dot_product_fused_attention_overrideable",
)

FVCORE_HANDLES: dict[str, Handle | None] = {
    **{f"aten::{op}": per_output_element for op in ELEMENTWISE_OPS},
    **{f"aten::{op}": per_input_element for op in REDUCTION_OPS},
    **{f"aten::{op}": sdpa_macs for op in SDPA_OPS},
    **{op: rnn_handle(op) for op in RNN_GATES},
    "aten::einsum": einsum_macs,
    "aten::baddbmm": baddbmm_macs,
    # RMSNorm: fvcore's norm convention (5 per element with a weight, 4 without), as for
    # aten::layer_norm; its weight is argument 2 as layer_norm's is (fvcore/nn/flop_count.py)
    "aten::rms_norm": norm_flop_counter(2),
    **{f"aten::{op}": None for op in NO_ARITHMETIC_OPS},
}
