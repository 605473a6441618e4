"""Our fvcore handles against hand counts on tiny nets, and fvcore against FlopCounterMode.

Units: fvcore counts 1 per multiply-add (``count_forward_macs``); FlopCounterMode 2
(``count_forward_flops_torch``). Hand counts below are in multiply-adds (MACs).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from harness.measure.flop_handles import einsum_macs_of
from harness.measure.flops import count_forward_flops_torch, count_forward_macs, forward_agreement


class Call(nn.Module):
    """A functional op as a Module, so fvcore can trace it."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


class FirstOutput(nn.Module):
    """An RNN module returning only its output sequence (or a PackedSequence's data)."""

    def __init__(self, rnn: nn.RNNBase, lengths: list[int] | None = None):
        super().__init__()
        self.rnn, self.lengths = rnn, lengths

    def forward(self, x):
        if self.lengths is None:
            return self.rnn(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(self.lengths), batch_first=self.rnn.batch_first)
        return self.rnn(packed)[0].data


def macs(model: nn.Module, *inputs: torch.Tensor) -> float:
    """fvcore MACs of one forward pass, after checking no op went uncounted."""
    count = count_forward_macs(model, inputs, num_samples=1)
    assert count.unsupported_ops == {}
    return count.macs_per_sample


def weight_macs_per_token(rnn: nn.RNNBase) -> int:
    """Independent check: each 2-D weight (W_ih, W_hh, W_hr) is one matrix-vector product per token."""
    return sum(p.numel() for name, p in rnn.named_parameters() if name.startswith("weight_"))


# --- recurrent layers ------------------------------------------------------------------------
# Per token, per layer, per direction: gates x H x (input + H); LSTM 4 gates, GRU 3, RNN 1.

RNN_CASES = {
    # 10 tokens x 4*4*(3+4) = 112  -> 1120
    "lstm_1layer": (lambda: nn.LSTM(3, 4), (5, 2, 3), 1120),
    # layer 0: 2 dirs x 4*4*(3+4) = 224; layer 1 reads 2*4 = 8: 2 x 4*4*(8+4) = 384; 608 x 10 tokens
    "lstm_2layer_bidir": (lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True), (5, 2, 3), 6080),
    "lstm_2layer_bidir_batch_first": (
        lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True), (2, 5, 3), 6080),
    # projection to 2: 4*4*(3+2) + W_hr 2*4 = 88 per token
    "lstm_proj": (lambda: nn.LSTM(3, 4, proj_size=2), (5, 2, 3), 880),
    # 10 tokens x 3*4*(3+4) = 84
    "gru": (lambda: nn.GRU(3, 4), (5, 2, 3), 840),
    # 10 tokens x 1*4*(3+4) = 28
    "rnn_tanh": (lambda: nn.RNN(3, 4), (5, 2, 3), 280),
    "rnn_relu": (lambda: nn.RNN(3, 4, nonlinearity="relu"), (5, 2, 3), 280),
}


@pytest.mark.parametrize("case", sorted(RNN_CASES))
def test_rnn_hand_count(case):
    build, shape, expected = RNN_CASES[case]
    torch.manual_seed(0)
    rnn = build()
    model, x = FirstOutput(rnn), torch.randn(shape)
    assert macs(model, x) == expected == 10 * weight_macs_per_token(rnn)
    # FlopCounterMode sees the same cell matmuls once oneDNN is off (see flops.py docstring)
    assert count_forward_flops_torch(model, (x,)) == 2 * expected


@pytest.mark.parametrize("rnn_cls, gates", [(nn.LSTM, 4), (nn.GRU, 3)])
def test_packed_sequence_counts_real_tokens_only(rnn_cls, gates):
    # lengths 5 and 3: 8 tokens, not the 10 of the padded batch
    torch.manual_seed(0)
    model, x = FirstOutput(rnn_cls(3, 4, batch_first=True), lengths=[5, 3]), torch.randn(2, 5, 3)
    expected = 8 * gates * 4 * (3 + 4)
    assert macs(model, x) == expected
    assert count_forward_flops_torch(model, (x,)) == 2 * expected


# --- attention -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "q_shape, kv_shape, v_dim, gqa",
    [
        ((2, 3, 4, 8), (2, 3, 6, 8), 8, False),  # CPU flash kernel
        ((2, 3, 4, 8), (2, 3, 6, 8), 5, False),  # E != Ev: math path
        ((2, 6, 4, 8), (2, 3, 6, 8), 8, True),  # grouped-query: 6 query heads share 3 KV heads
        ((2, 3, 4, 8), (1, 3, 6, 8), 8, False),  # K/V broadcast over the batch
    ],
)
def test_sdpa_hand_count(q_shape, kv_shape, v_dim, gqa):
    q, k, v = torch.randn(q_shape), torch.randn(kv_shape), torch.randn(*kv_shape[:-1], v_dim)
    model = Call(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa))
    b, heads, lq, e = q_shape
    expected = b * heads * lq * kv_shape[2] * (e + v_dim)  # B x heads x Lq x Lk x (E + Ev)
    assert macs(model, q, k, v) == expected
    assert count_forward_flops_torch(model, (q, k, v)) == 2 * expected


class SelfAttention(nn.Module):
    def __init__(self, need_weights: bool):
        super().__init__()
        self.mha, self.need_weights = nn.MultiheadAttention(16, 4, batch_first=True), need_weights

    def forward(self, x):
        return self.mha(x, x, x, need_weights=self.need_weights)[0]


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_hand_count(need_weights):
    # embed 16, 4 heads of 4, batch 2 x length 5 = 10 tokens
    #   in-projection 10 x 16 x 48 = 7680; out-projection 10 x 16 x 16 = 2560
    #   Q.K^T and attn.V: 2 x 4 heads x 5 x 5 x (4 + 4) = 1600
    # need_weights takes the explicit path: also q scaling 2*5*16 = 160 and softmax 2*4*5*5 = 200
    torch.manual_seed(0)
    model, x = SelfAttention(need_weights), torch.randn(2, 5, 16)
    matmuls = 7680 + 2560 + 1600
    assert macs(model, x) == matmuls + (160 + 200 if need_weights else 0)
    assert count_forward_flops_torch(model, (x,)) == 2 * matmuls


# --- elementwise convention ------------------------------------------------------------------

def test_elementwise_per_output_reductions_per_input_comparisons_free():
    x = torch.randn(2, 3, 4, 4)
    # sigmoid 96 + mul 96 (1 per output element), mean over 96 inputs (1 per input element)
    assert macs(Call(lambda x: (x.sigmoid() * x).mean()), x) == 96 + 96 + 96
    # max-pooling and ReLU compare, an integer add is not floating point: 0
    assert macs(Call(lambda x: F.relu(F.max_pool2d(x, 2))), x) == 0
    assert macs(Call(lambda i: i + 1), torch.arange(6)) == 0


# --- einsum ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "equation, shapes, expected",
    [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5),
        ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 6, 8)], 2 * 3 * 4 * 6 * 8),
        ("i,i->", [(7,), (7,)], 7),
        ("...ij,...jk", [(7, 2, 3), (3, 4)], 7 * 2 * 3 * 4),  # ellipsis, implicit output
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], 2 * 3 * 4 + 2 * 4 * 5),  # left to right, as torch
    ],
)
def test_einsum_hand_count(equation, shapes, expected):
    tensors = [torch.randn(s) for s in shapes]
    model = Call(lambda *t: torch.einsum(equation, *t))
    assert macs(model, *tensors) == expected
    assert count_forward_flops_torch(model, tuple(tensors)) == 2 * expected


def test_einsum_counts_what_fvcore_halves_or_invents():
    # fvcore's numpy-based count gives 6 for this outer product (12 multiplies), and half a unit
    # per element for a transpose; torch runs a mul (1 per output element) and a permute (none)
    assert macs(Call(lambda a, b: torch.einsum("i,j->ij", a, b)), torch.randn(3), torch.randn(4)) == 12
    assert macs(Call(lambda a: torch.einsum("ij->ji", a)), torch.randn(3, 4)) == 0
    # a label only one operand holds is summed out first (12 adds), then a 2x4 by 4 product
    assert einsum_macs_of("ijk,k->i", [[2, 3, 4], [4]]) == 24 + 8


def test_einsum_follows_the_traced_path():
    # opt_einsum order: (jk, kl) -> jl first (3*4*5 = 60), then (ij, jl) -> il (2*3*5 = 30)
    assert einsum_macs_of("ij,jk,kl->il", [[2, 3], [3, 4], [4, 5]], path=[1, 2, 0, 1]) == 90


# --- whole models: nothing unsupported, and fvcore agrees with FlopCounterMode ------------------

class LstmTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True, bidirectional=True)
        self.out = nn.Linear(64, 5)

    def forward(self, tokens):
        return F.log_softmax(self.out(self.lstm(self.embed(tokens))[0]), dim=-1)


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 64)
        layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.out = nn.Linear(64, 5)

    def forward(self, tokens):
        return self.out(self.encoder(self.embed(tokens)).mean(dim=1))


def resnet():
    return models.build_model("resnet", scale=0.125, num_classes=10, in_channels=1, image_size=28)


# Measured on CPU, torch 2.14: tagger 1.0004 (log_softmax only), transformer 1.027 (layer norm,
# GELU, residual adds, softmax). The ResNet at 1/8 width is 1.052: fvcore's own batch_norm handle
# (2 per element in eval) adds 4.1% and the 16 residual adds 1.1% to conv work that, with 8-64
# channel widths, is only 8-256 MACs per output element; FlopCounterMode counts neither.
@pytest.mark.parametrize(
    "build, inputs, upper",
    [
        (LstmTagger, (torch.randint(0, 50, (2, 7)),), 1.05),
        (TinyTransformer, (torch.randint(0, 50, (2, 16)),), 1.05),
        (resnet, (torch.randn(1, 1, 28, 28),), 1.06),
    ],
    ids=["lstm_tagger", "transformer", "resnet"],
)
def test_models_fully_supported_and_agree(build, inputs, upper):
    torch.manual_seed(0)
    model = build()
    assert count_forward_macs(model, inputs, num_samples=1).unsupported_ops == {}
    # fvcore counts elementwise work FlopCounterMode does not, so it is never below
    assert 1.0 <= forward_agreement(model, inputs) <= upper


def test_counting_restores_backends_and_model():
    model = LstmTagger()
    before = [p.detach().clone() for p in model.parameters()]
    backends = torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled
    count_forward_flops_torch(model, (torch.randint(0, 50, (1, 3)),))
    assert (torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled) == backends
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_agreement_is_none_when_flop_counter_sees_nothing():
    assert forward_agreement(nn.ReLU(), (torch.randn(4),)) is None


def test_training_step_of_an_lstm_is_counted_by_flop_counter_mode():
    """In train mode nn.LSTM runs oneDNN's kernel, which FlopCounterMode has no formula for:
    the step is counted on decomposed kernels, so forward + backward is about 3 x the forward."""
    from harness.measure.flops import count_train_step_flops

    torch.manual_seed(0)
    lstm = nn.LSTM(8, 16, batch_first=True)
    x = torch.randn(4, 5, 8, requires_grad=True)  # as an embedding's output: its gradient is needed
    macs = 4 * 5 * 4 * 16 * (8 + 16)  # B x T x gates x hidden x (input + hidden)

    def step(m):
        return m(x)[0].sum()

    per_sample = count_train_step_flops(lstm, step, num_samples=4)
    # forward 2 x macs; backward: the weights' gradients 2 x macs, the inputs' and hidden states'
    # 2 x macs, less the first step's hidden-state gradient (h0 is a constant): B x 4H x H MACs
    assert per_sample * 4 == 3 * 2 * macs - 2 * 4 * 4 * 16 * 16
    assert torch.backends.mkldnn.enabled  # restored
