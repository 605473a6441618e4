"""FLOP conventions, pinned down: each micro-benchmark op through fvcore and FlopCounterMode.

- analytic count: 2 FLOPs per multiply-add (the project convention, DESIGN.md);
- fvcore: 1 "flop" per multiply-add, i.e. MACs, so fvcore == analytic / 2;
- torch.utils.flop_counter.FlopCounterMode: 2 per multiply-add, so it equals analytic.
"""

from __future__ import annotations

import pytest
import torch

from kernels.flopcheck import (
    check_conv2d,
    check_copy,
    check_gemm,
    count_flop_counter_flops,
    count_fvcore_macs,
)
from kernels.ncu import MLP_BATCH, MLP_WIDTHS, counted_flops, mlp_train_step_flops
from kernels.ops import Conv2dShape, GemmShape, conv2d_bytes, conv2d_flops, copy_bytes, gemm_bytes, gemm_flops


def test_analytic_formulas_by_hand() -> None:
    # 2 x 3 outputs, each a dot product of length 4: 24 multiply-adds = 48 FLOPs.
    assert gemm_flops(GemmShape(m=2, n=3, k=4)) == 48
    assert gemm_bytes(GemmShape(m=2, n=3, k=4), itemsize=4) == (8 + 12 + 6) * 4
    # 1 image, 1 -> 1 channel, 4x4 input, 3x3 kernel, no padding: 2x2 outputs of 9 MACs.
    small = Conv2dShape(batch=1, in_channels=1, out_channels=1, height=4, width=4, kernel_size=3, stride=1, padding=0)
    assert small.out_hw == (2, 2)
    assert conv2d_flops(small) == 2 * 4 * 9
    assert conv2d_bytes(small, itemsize=2) == (16 + 9 + 4) * 2
    # Stride 2, padding 1 on 9x9: (9 + 2 - 3) // 2 + 1 = 5.
    assert Conv2dShape(1, 1, 1, 9, 9, 3, 2, 1).out_hw == (5, 5)
    # A copy moves every byte twice (read + write), the STREAM convention.
    assert copy_bytes(numel=10, itemsize=4) == 80


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("shape", [GemmShape(8, 16, 32), GemmShape(1, 7, 5), GemmShape(64, 3, 128)])
def test_gemm_counters_match_analytic(shape: GemmShape, dtype: str) -> None:
    check = check_gemm(shape, dtype)
    assert check.flop_counter_flops == gemm_flops(shape)  # 2 per multiply-add
    assert check.fvcore_macs == shape.m * shape.n * shape.k  # 1 per multiply-add
    assert 2 * check.fvcore_macs == check.analytic_flops
    assert check.agrees
    assert check.as_dict()["agrees"] is True


@pytest.mark.parametrize(
    "shape",
    [
        Conv2dShape(batch=2, in_channels=3, out_channels=4, height=9, width=9, kernel_size=3, stride=2, padding=1),
        Conv2dShape(batch=1, in_channels=8, out_channels=16, height=14, width=14, kernel_size=3, stride=1, padding=1),
        Conv2dShape(batch=3, in_channels=4, out_channels=2, height=8, width=6, kernel_size=1, stride=1, padding=0),
    ],
)
def test_conv2d_counters_match_analytic(shape: Conv2dShape) -> None:
    check = check_conv2d(shape, "fp32")
    h, w = shape.out_hw
    macs = shape.batch * shape.out_channels * h * w * shape.in_channels * shape.kernel_size**2
    assert check.fvcore_macs == macs
    assert check.flop_counter_flops == 2 * macs == check.analytic_flops
    assert check.agrees


def test_copy_counts_no_flops() -> None:
    check = check_copy(256)
    assert (check.analytic_flops, check.fvcore_macs, check.flop_counter_flops) == (0, 0, 0)
    assert check.agrees


def test_check_can_fail() -> None:
    """The agreement flag is not vacuous: a wrong analytic count is caught."""
    from dataclasses import replace

    check = check_gemm(GemmShape(4, 4, 4))
    assert not replace(check, analytic_flops=check.analytic_flops + 2).agrees
    assert not replace(check, fvcore_macs=check.analytic_flops).agrees  # fvcore read as FLOPs: wrong


def test_counters_directly_on_a_linear_layer() -> None:
    """Same conventions on nn.Linear (what models use): bias adds are not counted by either."""
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    assert count_fvcore_macs(layer, x) == 4 * 16 * 8
    assert count_flop_counter_flops(layer, x) == 2 * 4 * 16 * 8


def test_mlp_train_step_count() -> None:
    """The ncu training-step case: FlopCounterMode over forward + backward equals the analytic
    count (forward 2BIO per layer, weight grads 2BIO, input grads of all but the first layer)."""
    pairs = list(zip(MLP_WIDTHS[:-1], MLP_WIDTHS[1:]))
    fwd = sum(2 * MLP_BATCH * i * o for i, o in pairs)
    assert mlp_train_step_flops() == 2 * fwd + (fwd - 2 * MLP_BATCH * pairs[0][0] * pairs[0][1])
    assert counted_flops("train_step", "fp32", [1, 1, 1], device="meta") == mlp_train_step_flops()
    assert counted_flops("gemm", "bf16", [64, 32, 16], device="meta") == 2 * 64 * 32 * 16
