"""BERT encoder with a start/end span head for extractive question answering (Devlin et al., "BERT:
Pre-training of Deep Bidirectional Transformers for Language Understanding", NAACL 2019).

Sizes at ``scale=1.0``: BERT-base (Devlin et al. 2019, sec. 3): 12 layers, hidden 768, 12 heads of 64,
feed-forward 3072 (4 x hidden) with GELU, learned positions (512), two segment (token type) embeddings,
post-norm layer norms (eps 1e-12), dropout 0.1 on the embeddings, the attention weights and every
sub-layer output, weights drawn from N(0, 0.02) (google-research/bert ``modeling.py``,
``initializer_range``; ``init_std`` changes it: 0.02 was chosen for width 768, and a narrow model
trained from scratch for minutes learns its attention faster from a larger start, see
``conf/harness/workload/qa.yaml``). The SQuAD head is one linear layer from each token's final hidden state to a
start and an end logit (sec. 4.2). With the 30,522-word-piece uncased vocabulary this is 108,893,186
parameters: 23.84M embeddings, 85.05M in the 12 layers and 1,538 in the head (no pooler: SQuAD does
not use it); "110M" in the paper counts the pooler (590,592 more).

``scale`` shrinks width and depth together, as :mod:`models.transformer_mt` does: heads =
max(1, round(12 x scale)) of ``head_dim`` (64) each, so hidden = 64 x heads and every head keeps the
paper's width; layers = max(1, round(12 x scale)) unless ``layers`` sets them; feed-forward
``ffn_ratio`` (4) x hidden. So scale=1/6 is 2 layers, 2 heads, hidden 128; scale=0.25 is 3 layers,
3 heads, hidden 192.

Module names follow Hugging Face's ``BertForQuestionAnswering`` (``bert.embeddings.word_embeddings``,
``bert.encoder.layer.N.attention.self.query``, ..., ``qa_outputs``), so ``pretrained=PATH`` loads a local
``state_dict`` saved from either this module or that one (the pooler and buffers it does not have are
ignored; a shape that does not match is an error). Pretrained weights need their own word-piece
vocabulary (the workload's ``vocab_file``).

Attention is ``F.scaled_dot_product_attention`` (fvcore and FlopCounterMode both count it). Padding is
token id ``pad_id`` (0); the attention mask is derived from it, so ``forward(input_ids, token_type_ids)``
needs no mask argument and returns (B, T, 2) start and end logits. Architecture only: no training code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import register_model

#: Devlin et al. 2019, sec. 3 (BERT-base) and google-research/bert bert_config.json of BERT-base.
BASE_LAYERS = 12
BASE_HEADS = 12
HEAD_DIM = 64  # hidden 768 / 12 heads
FFN_RATIO = 4  # intermediate 3072 / hidden 768
MAX_POSITIONS = 512  # max_position_embeddings
TYPE_VOCAB = 2  # type_vocab_size
DROPOUT = 0.1  # hidden_dropout_prob and attention_probs_dropout_prob
INIT_STD = 0.02  # initializer_range
LN_EPS = 1e-12  # layer_norm_eps


@dataclass
class BertConfig:
    """Architecture knobs of ``conf/harness/model/bert.yaml`` (``scale`` is a top-level key)."""

    name: str = "bert"
    head_dim: int = HEAD_DIM  # width per attention head; hidden = head_dim x heads
    layers: Optional[int] = None  # null: max(1, round(12 x scale))
    ffn_ratio: int = FFN_RATIO  # feed-forward width / hidden
    max_positions: int = MAX_POSITIONS
    dropout: float = DROPOUT  # embeddings and sub-layer outputs
    attention_dropout: float = DROPOUT  # on the attention weights
    pretrained: Optional[str] = None  # a local state_dict (.pt/.bin) to load; null: random init
    init_std: float = INIT_STD  # standard deviation of the initial weights (BERT's initializer_range)


def scaled_dims(scale: float, head_dim: int = HEAD_DIM) -> tuple[int, int, int]:
    """(hidden, heads, layers) at width/depth multiplier ``scale`` (see the module docstring)."""
    heads = max(1, round(BASE_HEADS * scale))
    layers = max(1, round(BASE_LAYERS * scale))
    return head_dim * heads, heads, layers


class Embeddings(nn.Module):
    """Word + position + segment embeddings, layer norm, dropout (BERT's embedding layer)."""

    def __init__(self, vocab_size: int, hidden: int, max_positions: int, pad_id: int, dropout: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=pad_id)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)  # noqa: N815 (Hugging Face's name, for loading)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        if t > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence of {t} tokens is longer than the {self.position_embeddings.num_embeddings} "
                             "learned positions")
        positions = torch.arange(t, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention's projections (Hugging Face's ``attention.self``)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, hidden // heads, dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                           attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)


class DenseNorm(nn.Module):
    """Projection, dropout, residual add and layer norm (post-norm; Hugging Face's ``*.output``)."""

    def __init__(self, d_in: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)  # noqa: N815
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.self = SelfAttention(hidden, heads, attention_dropout)
        self.output = DenseNorm(hidden, hidden, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as BERT's gelu


class Layer(nn.Module):
    """One encoder layer: self-attention, then the feed-forward block, each with a residual and layer norm."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.attention = Attention(hidden, heads, dropout, attention_dropout)
        self.intermediate = Intermediate(hidden, ffn)
        self.output = DenseNorm(ffn, hidden, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, num_layers: int, **kwargs) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(**kwargs) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertBody(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, heads: int, num_layers: int, ffn: int, max_positions: int,
                 pad_id: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.embeddings = Embeddings(vocab_size, hidden, max_positions, pad_id, dropout)
        self.encoder = Encoder(num_layers, hidden=hidden, heads=heads, ffn=ffn, dropout=dropout,
                               attention_dropout=attention_dropout)


class BertForQuestionAnswering(nn.Module):
    """BERT encoder + span head: ``forward(input_ids, token_type_ids)`` -> (B, T, 2) start/end logits."""

    def __init__(self, vocab_size: int, hidden: int, heads: int, num_layers: int, ffn: int,
                 max_positions: int = MAX_POSITIONS, pad_id: int = 0, dropout: float = DROPOUT,
                 attention_dropout: float = DROPOUT, init_std: float = INIT_STD) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}")
        self.pad_id, self.max_positions = pad_id, max_positions
        self.bert = BertBody(vocab_size, hidden, heads, num_layers, ffn, max_positions, pad_id, dropout,
                             attention_dropout)
        self.qa_outputs = nn.Linear(hidden, 2)
        if init_std <= 0:
            raise ValueError(f"init_std={init_std} is invalid: it must be > 0")
        self.apply(lambda module: self._init(module, init_std))

    @staticmethod
    def _init(module: nn.Module, std: float = INIT_STD) -> None:
        """google-research/bert: truncated N(0, 0.02) weights (plain normal here, as Hugging Face; ``std`` is
        ``init_std``), zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        # (B, 1, 1, T) boolean, True = attend: every query attends to the real tokens only
        mask = (input_ids != self.pad_id)[:, None, None, :]
        x = self.bert.embeddings(input_ids, token_type_ids)
        return self.qa_outputs(self.bert.encoder(x, mask))


def load_pretrained(model: nn.Module, path: str) -> list[str]:
    """Load a local state_dict into ``model`` (ours or Hugging Face's ``BertForQuestionAnswering`` names);
    returns the keys of the file that were ignored (pooler, buffers). Missing weights are an error."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"model.pretrained={path}: no such file (a state_dict saved with torch.save)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    ignored = sorted(k for k in state if k not in own)
    kept = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(kept))
    if missing:
        raise ValueError(f"model.pretrained={path}: {len(missing)} weights missing, e.g. {missing[0]!r}")
    for key, value in kept.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"model.pretrained={path}: {key} has shape {tuple(value.shape)}, the model "
                             f"{tuple(own[key].shape)} (scale and vocabulary must match the weights)")
    model.load_state_dict(kept)
    return ignored


@register_model("bert", BertConfig, task="qa")
def build_bert(scale: float = 1.0, vocab_size: int = 30522, pad_id: int = 0, head_dim: int = HEAD_DIM,
               layers: Optional[int] = None, ffn_ratio: int = FFN_RATIO, max_positions: int = MAX_POSITIONS,
               dropout: float = DROPOUT, attention_dropout: float = DROPOUT,
               pretrained: Optional[str] = None, init_std: float = INIT_STD) -> BertForQuestionAnswering:
    """BERT-base at ``scale=1.0`` (see the module docstring) with a span head."""
    hidden, heads, depth = scaled_dims(scale, head_dim)
    if layers is not None:
        if layers < 1:
            raise ValueError(f"layers={layers} is invalid: it must be >= 1 or null")
        depth = layers
    if ffn_ratio < 1 or max_positions < 1:
        raise ValueError(f"ffn_ratio={ffn_ratio} and max_positions={max_positions} must be >= 1")
    model = BertForQuestionAnswering(vocab_size, hidden, heads, depth, ffn_ratio * hidden, max_positions, pad_id,
                                     dropout, attention_dropout, init_std)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def num_params_formula(vocab_size: int, hidden: int, layers: int, ffn: int, max_positions: int = MAX_POSITIONS) -> int:
    """Parameters of :class:`BertForQuestionAnswering`, by hand: embeddings (word, position, 2 segments,
    layer norm), per layer 4 hidden x hidden projections + biases, the feed-forward pair, two layer norms,
    and the 2-unit head."""
    emb = (vocab_size + max_positions + TYPE_VOCAB) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + (hidden * ffn + ffn) + (ffn * hidden + hidden) + 2 * 2 * hidden
    return emb + layers * layer + 2 * hidden + 2


__all__ = ["BertConfig", "BertForQuestionAnswering", "build_bert", "load_pretrained", "num_params_formula",
           "scaled_dims"]
