"""Encoder-decoder Transformer for translation (Vaswani et al., "Attention Is All You Need", NeurIPS 2017).

Sizes at ``scale=1.0``: Transformer-base (Vaswani et al. 2017, sec. 3 and table 3, row "base"):
6 encoder and 6 decoder layers, d_model 512, 8 heads of 64, feed-forward 2048, dropout 0.1 on
every sub-layer output and on the embedding sums (sec. 5.4), sinusoidal positions (sec. 3.5),
embeddings multiplied by sqrt(d_model) and one weight matrix shared by the source embedding,
the target embedding and the pre-softmax projection, over a joint sub-word vocabulary
(sec. 3.4). Parameters: 44.14M in the layers (44,140,544 with the two final layer norms below)
plus vocab x 512 in the shared embedding: 63.08M with the paper's ~37,000-token En-De vocabulary,
60.52M with its 32,000-word-piece En-Fr one (the paper's table 3 says 65M for base).

``scale`` shrinks width and depth together:
- width: d_model = head_dim x max(1, round(8 x scale)) -- the number of heads scales and each head
  keeps ``head_dim`` (64 as in the paper), so attention per head is the paper's; feed-forward is
  4 x d_model (the paper's ratio 2048/512);
- depth: max(1, round(6 x scale)) layers in the encoder and in the decoder (Python rounds halves to
  even: 0.25 -> 2, 0.5 -> 3), unless ``encoder_layers``/``decoder_layers`` set them.
So scale=0.25 is 2+2 layers, 2 heads, d_model 128, FFN 512; scale=0.5 is 3+3, 4 heads, d_model 256.

Pre-norm (layer norm at the input of each sub-layer, one final layer norm after each stack) rather
than the paper's post-norm: it trains stably at higher learning rates with a short warm-up
(Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020), which is what
a minutes-long CPU budget needs; ``pre_norm=false`` gives the paper's post-norm (no final norms).

Attention is ``F.scaled_dot_product_attention`` (fvcore and FlopCounterMode both count it). Padding
is token id ``pad_id`` (0) in both languages; masks are derived from it, so ``forward(src, tgt_in)``
needs no mask arguments. For greedy decoding: :meth:`encode` once per batch (the encoder and each
decoder layer's cross-attention keys and values), then :meth:`decode_step` once per output
position with the self-attention keys and values of the earlier positions cached.

Architecture only: no training code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import register_model

#: Vaswani et al. 2017, table 3 ("base") and sec. 5.4.
BASE_LAYERS = 6
BASE_HEADS = 8
HEAD_DIM = 64  # d_model 512 / 8 heads
FFN_RATIO = 4  # d_ff 2048 / d_model 512
DROPOUT = 0.1
#: An attention layer's keys and values, each (B, heads, T, head_dim).
KeysValues = tuple[torch.Tensor, torch.Tensor]
#: Positions the sinusoid table holds (longer inputs raise an error instead of wrapping).
MAX_POSITIONS = 1024


@dataclass
class TransformerConfig:
    """Architecture knobs of ``conf/harness/model/transformer.yaml`` (``scale`` is a top-level key)."""

    name: str = "transformer"
    head_dim: int = HEAD_DIM  # width per attention head; d_model = head_dim x heads
    encoder_layers: Optional[int] = None  # null: max(1, round(6 x scale))
    decoder_layers: Optional[int] = None  # null: max(1, round(6 x scale))
    ffn_ratio: int = FFN_RATIO  # feed-forward width / d_model
    dropout: float = DROPOUT  # residual and embedding dropout (Vaswani et al. sec. 5.4)
    attention_dropout: float = 0.0  # on the attention weights (not in the paper; 0 = off)
    pre_norm: bool = True  # false: the paper's post-norm


def scaled_dims(scale: float, head_dim: int = HEAD_DIM) -> tuple[int, int, int]:
    """(d_model, heads, layers) at width/depth multiplier ``scale`` (see the module docstring)."""
    heads = max(1, round(BASE_HEADS * scale))
    layers = max(1, round(BASE_LAYERS * scale))
    return head_dim * heads, heads, layers


def sinusoids(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) sinusoidal position encodings (Vaswani et al. 2017, sec. 3.5):
    PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    pos = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections (self or cross)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, d_model // heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, heads, T, head_dim)."""
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> KeysValues:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor] = None,
               causal: bool = False) -> torch.Tensor:
        """Queries from ``x`` (B, Tq, d) over keys/values (B, heads, Tk, head_dim); ``mask`` True = attend."""
        q = self.split(self.q(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: Optional[torch.Tensor] = None,
                causal: bool = False) -> torch.Tensor:
        k, v = self.keys_values(memory)
        return self.attend(x, k, v, mask, causal)


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, attention_dropout: float,
                 pre_norm: bool) -> None:
        super().__init__()
        self.attn = Attention(d_model, heads, attention_dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            h = self.norm1(x)
            x = x + self.drop(self.attn(h, h, mask))
            return x + self.drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, x, mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, attention_dropout: float,
                 pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, heads, attention_dropout)
        self.cross_attn = Attention(d_model, heads, attention_dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, cross_kv: KeysValues, mask: torch.Tensor,
                past: Optional[KeysValues] = None) -> tuple[torch.Tensor, KeysValues]:
        """Returns the layer's output and its self-attention (keys, values) over every position seen.

        ``past`` None: teacher forcing, ``x`` holds every target position (causal self-attention;
        target padding sits after the real tokens, so no real position ever sees it). Otherwise
        ``x`` is the next position(s) and ``past`` the cached keys/values of the earlier ones.
        ``cross_kv`` are the encoder output's keys/values, ``mask`` (B, 1, 1, S) True at real
        source tokens.
        """
        h = self.norm1(x) if self.pre_norm else x
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # decoding one position may see every cached position and itself: no causal mask
        a = self.self_attn.attend(h, k, v, causal=past is None)
        if self.pre_norm:
            x = x + self.drop(a)
            x = x + self.drop(self.cross_attn.attend(self.norm2(x), *cross_kv, mask))
            x = x + self.drop(self.ffn(self.norm3(x)))
        else:
            x = self.norm1(x + self.drop(a))
            x = self.norm2(x + self.drop(self.cross_attn.attend(x, *cross_kv, mask)))
            x = self.norm3(x + self.drop(self.ffn(x)))
        return x, (k, v)


class TransformerMT(nn.Module):
    """Encoder-decoder Transformer with one shared embedding (source, target, output projection).

    ``forward(src, tgt_in)`` -> logits (B, T, vocab) under teacher forcing. ``src`` (B, S) and
    ``tgt_in`` (B, T) are token ids padded with ``pad_id`` at the end.
    """

    def __init__(self, vocab_size: int, d_model: int, heads: int, encoder_layers: int, decoder_layers: int,
                 d_ff: int, dropout: float, attention_dropout: float = 0.0, pre_norm: bool = True,
                 pad_id: int = 0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} is not a multiple of heads={heads}")
        self.d_model, self.heads, self.pad_id, self.vocab_size = d_model, heads, pad_id, vocab_size
        self.max_positions = MAX_POSITIONS
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)  # so embed x sqrt(d) has unit scale
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.register_buffer("positions", sinusoids(MAX_POSITIONS, d_model), persistent=False)
        self.embed_scale = math.sqrt(d_model)  # Vaswani et al. sec. 3.4
        self.drop = nn.Dropout(dropout)
        args = (d_model, heads, d_ff, dropout, attention_dropout, pre_norm)
        self.encoder = nn.ModuleList(EncoderLayer(*args) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*args) for _ in range(decoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()

    # ------------------------------------------------------------ pieces
    def _embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        t = tokens.shape[1]
        if offset + t > MAX_POSITIONS:
            raise ValueError(f"sequence of {offset + t} positions is longer than the {MAX_POSITIONS} the model encodes")
        return self.drop(self.embed(tokens) * self.embed_scale + self.positions[offset: offset + t])

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, S) bool, True at real source tokens (SDPA's boolean mask: True = attend)."""
        return (src != self.pad_id)[:, None, None, :]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-softmax projection with the shared embedding matrix (Vaswani et al. sec. 3.4)."""
        return F.linear(self.decoder_norm(h), self.embed.weight)

    # ------------------------------------------------------------ teacher forcing
    def encode_memory(self, src: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        mask = self.source_mask(src)
        memory = self.encode_memory(src, mask)
        x = self._embed(tgt_in)
        for layer in self.decoder:
            x, _ = layer(x, layer.cross_attn.keys_values(memory), mask)
        return self.logits(x)

    # ------------------------------------------------------------ greedy decoding
    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Once per batch: the source mask, and each decoder layer's cross-attention (keys, values)
        over the encoder output, flattened as [k_0, v_0, k_1, v_1, ...]."""
        mask = self.source_mask(src)
        memory = self.encode_memory(src, mask)
        cross: list[torch.Tensor] = []
        for layer in self.decoder:
            cross.extend(layer.cross_attn.keys_values(memory))
        return mask, cross

    def empty_cache(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Self-attention (keys, values) of no earlier position, per decoder layer: [k_0, v_0, ...]."""
        shape = (batch, self.heads, 0, self.d_model // self.heads)
        return [torch.zeros(shape, device=device, dtype=dtype) for _ in range(2 * len(self.decoder))]

    def decode_step(self, tokens: torch.Tensor, mask: torch.Tensor, cross: list[torch.Tensor],
                    cache: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One output position for every sentence: ``tokens`` (B, 1) are the previous outputs, ``cache``
        the self-attention keys/values of the positions before (length t each). Returns the logits
        (B, vocab) of position t and the cache extended to t + 1 positions."""
        t = cache[0].shape[2] if cache else 0
        x = self._embed(tokens, offset=t)
        new_cache: list[torch.Tensor] = []
        for i, layer in enumerate(self.decoder):
            x, kv = layer(x, (cross[2 * i], cross[2 * i + 1]), mask, past=(cache[2 * i], cache[2 * i + 1]))
            new_cache.extend(kv)
        return self.logits(x)[:, -1], new_cache


@register_model("transformer", TransformerConfig, task="translation")
def build_transformer(scale: float = 1.0, vocab_size: int = 37000, head_dim: int = HEAD_DIM,
                      encoder_layers: Optional[int] = None, decoder_layers: Optional[int] = None,
                      ffn_ratio: int = FFN_RATIO, dropout: float = DROPOUT, attention_dropout: float = 0.0,
                      pre_norm: bool = True, pad_id: int = 0) -> TransformerMT:
    """Transformer-base at ``scale=1.0`` (Vaswani et al. 2017), shrunk in width and depth by ``scale``."""
    if head_dim < 1 or ffn_ratio < 1:
        raise ValueError(f"head_dim={head_dim} and ffn_ratio={ffn_ratio} must be >= 1")
    for key, value in (("encoder_layers", encoder_layers), ("decoder_layers", decoder_layers)):
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} is invalid: it must be >= 1 or null (from scale)")
    d_model, heads, layers = scaled_dims(scale, head_dim)
    return TransformerMT(vocab_size, d_model, heads, encoder_layers or layers, decoder_layers or layers,
                         ffn_ratio * d_model, dropout, attention_dropout, pre_norm, pad_id)
