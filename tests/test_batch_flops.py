"""FLOPs per batch as executed: tallied per shape, counted once per shape, only when settled."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.measure.batch_flops import BatchFlops
from harness.measure.flops import count_forward_macs

# A per-position linear layer 4 -> 3 without bias: 12 multiply-adds per position (24 FLOPs).
LIN = nn.Linear(4, 3, bias=False)


def batch(rows: int, length: int, real: int) -> dict:
    return {"x": torch.randn(rows, length, 4), "real": real}


def ledger(calls: list) -> BatchFlops:
    def count(b):
        calls.append(tuple(b["x"].shape))
        return count_forward_macs(LIN, (b["x"],), num_samples=1)

    return BatchFlops(count, lambda b: tuple(b["x"].shape), lambda b: (b["real"], b["x"].shape[0] * b["x"].shape[1]))


def test_padded_batches_cost_their_shapes_and_each_shape_is_counted_once_when_settled():
    calls: list = []
    f = ledger(calls)
    f.add("train", batch(2, 3, real=5))  # 6 positions, 1 padding
    f.add("train", batch(2, 5, real=7))  # 10 positions, 3 padding
    f.add("train", batch(2, 3, real=6))  # same shape as the first: not counted again
    assert calls == []  # nothing is counted while adding (that is inside the timed window)
    f.settle()
    assert sorted(calls) == [(2, 3, 4), (2, 5, 4)]
    # forward: 12 MACs x positions as run = 12 x (6 + 10 + 6) = 264 MACs = 528 FLOPs; training 3x
    assert f.forward_flops("train") == 528
    assert f.train_flops("train") == 3 * 528
    assert f.padding_fraction("train") == pytest.approx(1 - 18 / 22)
    assert f.distinct_shapes("train") == 2 and f.unsupported_ops == {}
    f.add("warmup", batch(2, 5, real=10))
    assert f.forward_flops("warmup") == 240 and sorted(calls) == [(2, 3, 4), (2, 5, 4)]  # cached shape
    assert f.padding_fraction("eval") is None  # no batch, no fraction


def test_not_counting_still_tallies_padding():
    f = BatchFlops(None, lambda b: tuple(b["x"].shape), lambda b: (b["real"], b["x"].numel() // 4))
    f.add("train", batch(1, 4, real=2))
    assert f.train_flops("train") is None and f.padding_fraction("train") == 0.5


def test_a_count_that_fails_leaves_every_total_null_instead_of_raising():
    def count(b):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")

    f = BatchFlops(count, lambda b: tuple(b["x"].shape), lambda b: (b["real"], b["real"]))
    f.add("train", batch(1, 2, real=2))
    assert f.train_flops("train") is None
    assert f.failure == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"

