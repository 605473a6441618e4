"""FLOP counts against hand-computed values on tiny nets.

Convention under test: fvcore counts 1 per multiply-add (we store that as MACs and double it);
FlopCounterMode counts 2 per multiply-add, forward and backward.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.measure.flops import count_forward_macs, count_train_step_flops, train_flops


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    # conv: 1 -> 2 channels, 3x3, no padding, on 5x5 -> 3x3 output
    # linear: 2*3*3 = 18 -> 4
    return nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Flatten(), nn.Linear(18, 4, bias=False))


# Hand count, per sample:
#   conv  : 2 out channels x 3x3 outputs x (1 in channel x 3x3 kernel) = 2*9*9 = 162 MACs
#   linear: 18 x 4                                                    =  72 MACs
CONV_MACS, LINEAR_MACS = 162, 72


def test_fvcore_forward_count_matches_hand_count():
    count = count_forward_macs(tiny_net(), (torch.randn(1, 1, 5, 5),), num_samples=1)
    assert count.macs_per_sample == CONV_MACS + LINEAR_MACS
    assert count.flops_per_sample == 2 * (CONV_MACS + LINEAR_MACS)


def test_forward_count_is_per_sample():
    count = count_forward_macs(tiny_net(), (torch.randn(4, 1, 5, 5),), num_samples=4)
    assert count.macs_per_sample == CONV_MACS + LINEAR_MACS


def test_unsupported_ops_are_counted_not_dropped():
    # aten::add has a handle now (harness.measure.flop_handles); an FFT still has none
    class WithFFT(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3, bias=False)

        def forward(self, x):
            return torch.fft.rfft(self.lin(x))

    count = count_forward_macs(WithFFT(), (torch.randn(1, 3),), num_samples=1)
    assert count.macs_per_sample == 9
    assert count.unsupported_ops == {"aten::fft_rfft": 1}


def test_flop_counter_training_step_matches_hand_count():
    # Backward of each layer: grad of its weight costs the forward's MACs again; grad of its
    # input costs them once more, except for the first layer, whose input needs no gradient.
    #   forward  : 2 x (162 + 72)             = 468 FLOPs
    #   backward : linear 2 x (72 + 72) = 288; conv weight only 2 x 162 = 324  -> 612
    x, y = torch.randn(3, 1, 5, 5), torch.tensor([0, 1, 2])

    def step(model):
        return nn.functional.cross_entropy(model(x), y)

    per_sample = count_train_step_flops(tiny_net(), step, num_samples=3)
    assert per_sample == 468 + 612
    assert per_sample / (3 * 468) < 1  # below the paper's 3x rule: the first layer skips grad-input


def test_train_step_count_leaves_the_model_untouched():
    model = tiny_net()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(3, 1, 5, 5), torch.tensor([0, 1, 2])
    count_train_step_flops(model, lambda m: nn.functional.cross_entropy(m(x), y), num_samples=3)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_paper_training_compute_is_three_forward_passes_per_sample():
    assert train_flops(100.0, samples=7) == 2100.0
    assert train_flops(None, samples=7) is None
