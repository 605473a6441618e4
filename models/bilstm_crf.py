"""BiLSTM-CRF tagger (Lample et al., "Neural Architectures for Named Entity Recognition", NAACL 2016).

Words are embedded, each word's characters are encoded into a vector (a character BiLSTM as in
Lample et al., or the character CNN of Ma & Hovy, "End-to-end Sequence Labeling via
Bi-directional LSTM-CNNs-CRF", ACL 2016), the two are concatenated, dropped out, read by a
word-level BiLSTM, and projected to one score per tag; a linear-chain CRF scores tag sequences.

Sizes at ``scale=1.0``, as published (Lample et al. secs. 4-5) and as the defaults of the
authors' code (github.com/glample/tagger, ``train.py``: ``char_dim``, ``char_lstm_dim``,
``word_dim``, ``word_lstm_dim``, ``dropout``):
- word embedding 100 (their skip-n-gram embeddings; here learned from scratch),
- character embedding 25, character BiLSTM 25 per direction,
- word BiLSTM 100 per direction, one layer,
- dropout 0.5 on the concatenated embeddings, before the word BiLSTM.
With ``char_encoder="cnn"``, Ma & Hovy's character CNN (secs. 2.1 and 3.1, table 1): character
embedding 30, 30 filters of width 3, max-pooled over the word; the rest stays Lample et al.'s.
``scale`` multiplies every width (embeddings, hidden sizes, filters).

Padding and the backward direction. Batches are padded at the end to a fixed (B, T) and run at
that shape (no ``pack_padded_sequence``), so the work done is exactly the padded shape a FLOP
counter sees. A bidirectional LSTM over a right-padded batch would start its backward direction
on padding; instead each sequence is reversed *within its own length* (a gather that maps
position t < n to n - 1 - t and leaves the padding in place), run through a forward-direction
LSTM, and the outputs are gathered back with the same (self-inverse) index. The backward states
of real positions therefore never see padding, exactly as with packed sequences
(:func:`reverse_within_length`; a test checks it against a per-sentence reference). The same
scheme runs the character BiLSTM over each word's characters.

Architecture only: no training code. ``forward(words, chars, mask)`` returns the emission
scores (B, T, num_tags); the CRF lives in ``self.crf`` (:class:`LinearChainCRF`), whose
``nll`` gives the per-sentence negative log-likelihood and ``decode`` the Viterbi tags.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.registry import register_model

#: Lample et al. 2016 (secs. 4-5; glample/tagger train.py defaults).
WORD_DIM = 100
CHAR_DIM = 25
CHAR_HIDDEN = 25  # per direction
WORD_HIDDEN = 100  # per direction
DROPOUT = 0.5
#: Ma & Hovy 2016, secs. 2.1 and 3.1, table 1 (character CNN).
CNN_CHAR_DIM = 30
CNN_FILTERS = 30
CNN_WIDTH = 3


@dataclass
class BiLstmCrfConfig:
    """Architecture knobs of ``conf/harness/model/bilstm_crf.yaml`` (``scale`` is a top-level key)."""

    name: str = "bilstm_crf"
    char_encoder: str = "lstm"  # lstm (Lample et al. 2016) | cnn (Ma & Hovy 2016) | none
    dropout: float = DROPOUT  # on the concatenated word+char embeddings (Lample et al.: 0.5)
    output_dropout: float = 0.0  # on the word BiLSTM's outputs (not in Lample et al.; 0 = off)
    crf: bool = True  # false: independent per-token softmax instead of the CRF


def scaled(width: int, scale: float) -> int:
    """Width of a ``width``-unit layer at width multiplier ``scale`` (at least 1)."""
    return max(1, int(round(width * scale)))


def reverse_index(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size) index that reverses the first ``lengths[i]`` positions of row i and keeps the rest.

    Position t < n maps to n - 1 - t; t >= n maps to itself. The map is its own inverse.
    """
    t = torch.arange(size, device=lengths.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    return torch.where(t < n, n - 1 - t, t)


def reverse_within_length(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather ``x`` (N, T, D) along T with an index from :func:`reverse_index`."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class MaskedBiLSTM(nn.Module):
    """One-layer bidirectional LSTM over right-padded sequences, run at their padded shape.

    The forward direction reads positions 0..T-1; the backward one reads each sequence reversed
    within its length (see the module docstring), so padding never reaches a real position.
    Returns (N, T, 2 * hidden): forward and backward states at each position.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.fwd = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.bwd = nn.LSTM(input_size, hidden_size, batch_first=True)

    def directions(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(forward outputs, backward outputs in *reversed* order, reversal index).

        Row i of the backward outputs holds, at position t < n_i, the state after reading
        positions n_i - 1 down to n_i - 1 - t; its state at t = n_i - 1 has read the whole sequence.
        """
        index = reverse_index(lengths, x.shape[1])
        out_fwd, _ = self.fwd(x)
        out_bwd, _ = self.bwd(reverse_within_length(x, index))
        return out_fwd, out_bwd, index

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, T, 2H): forward and backward states at each position, in reading order."""
        out_fwd, out_bwd, index = self.directions(x, lengths)
        return torch.cat([out_fwd, reverse_within_length(out_bwd, index)], dim=-1)


class CharLSTMEncoder(nn.Module):
    """Lample et al. 2016: a character BiLSTM; a word is the forward LSTM's last state
    concatenated with the backward LSTM's last state (the one that has read the first character)."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = MaskedBiLSTM(char_dim, hidden)
        self.out_dim = 2 * hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, length = chars.shape
        flat = chars.reshape(b * t, length)
        # Padding words have no characters: give them length 1 (their output is masked later).
        lengths = (flat != 0).sum(dim=1).clamp(min=1)
        out_fwd, out_bwd, _ = self.lstm.directions(self.embed(flat), lengths)
        # Each direction has read the whole word at step n - 1 of its own reading order.
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out_fwd.shape[-1])
        fwd_last = out_fwd.gather(1, last).squeeze(1)
        bwd_first = out_bwd.gather(1, last).squeeze(1)
        return torch.cat([fwd_last, bwd_first], dim=-1).view(b, t, self.out_dim)


class CharCNNEncoder(nn.Module):
    """Ma & Hovy 2016: character embeddings, one convolution, max-pooled over the word.

    Padding characters are excluded from the max (their positions are set to -inf before it);
    a word with no characters (a padding word) gets zeros.
    """

    def __init__(self, num_chars: int, char_dim: int, filters: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, width, padding=width // 2)
        self.out_dim = filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, length = chars.shape
        flat = chars.reshape(b * t, length)
        h = self.conv(self.embed(flat).transpose(1, 2))  # (N, filters, L)
        real = (flat != 0).unsqueeze(1)
        h = h.masked_fill(~real, float("-inf")).amax(dim=2)
        h = torch.where(real.any(dim=2), h, torch.zeros_like(h))
        return h.view(b, t, -1)


class LinearChainCRF(nn.Module):
    """Linear-chain CRF over emission scores (Lample et al. 2016; Lafferty et al. 2001).

    score(x, y) = start[y_0] + sum_t emit[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_{n-1}];
    p(y | x) = exp(score) / Z, Z summed over all tag sequences by the forward algorithm.
    Masks are right-padded prefixes (every sentence has at least one token).
    """

    decoding = "Viterbi (linear-chain CRF)"

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of the tag sequences ``tags`` (B, T); (B,)."""
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return (self.start[tags[:, 0]] + (emit * maskf).sum(1)
                + (trans * maskf[:, 1:]).sum(1) + self.end[last])

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sentence by the forward algorithm; (B,)."""
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``tags`` per sentence; (B,)."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi: the highest-scoring tag sequence per sentence, (B, T) (padding positions
        hold arbitrary tags; read the first ``mask.sum(1)`` of each row)."""
        b, t_len, k = emissions.shape
        score = self.start + emissions[:, 0]
        keep = torch.arange(k, device=emissions.device).expand(b, k)
        pointers = []
        for t in range(1, t_len):
            best, arg = (score.unsqueeze(2) + self.transitions).max(dim=1)
            m = mask[:, t : t + 1]
            score = torch.where(m, best + emissions[:, t], score)
            # At padding, point each tag at itself so the backtrace walks through unchanged.
            pointers.append(torch.where(m, arg, keep))
        tags = [(score + self.end).argmax(dim=1)]
        for arg in reversed(pointers):
            tags.append(arg.gather(1, tags[-1].unsqueeze(1)).squeeze(1))
        return torch.stack(tags[::-1], dim=1)


class SoftmaxTagger(nn.Module):
    """Independent per-token softmax with the CRF's interface (``crf: false``, an ablation)."""

    decoding = "per-token argmax (no CRF)"

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logp = emissions.log_softmax(-1).gather(2, tags.unsqueeze(-1)).squeeze(-1)
        return -(logp * mask.to(logp.dtype)).sum(1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return emissions.argmax(-1)


class BiLstmCrf(nn.Module):
    """Word + character embeddings -> dropout -> word BiLSTM -> linear -> emissions; CRF on top."""

    def __init__(self, vocab_size: int, num_chars: int, num_tags: int, word_dim: int,
                 word_hidden: int, char_encoder: str, char_dim: int, char_hidden: int,
                 cnn_width: int, dropout: float, output_dropout: float, crf: bool) -> None:
        super().__init__()
        self.word_embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        if char_encoder == "lstm":
            self.char_encoder: nn.Module | None = CharLSTMEncoder(num_chars, char_dim, char_hidden)
        elif char_encoder == "cnn":
            self.char_encoder = CharCNNEncoder(num_chars, char_dim, char_hidden, cnn_width)
        else:
            self.char_encoder = None
        char_out = self.char_encoder.out_dim if self.char_encoder is not None else 0
        self.dropout = nn.Dropout(dropout)
        self.lstm = MaskedBiLSTM(word_dim + char_out, word_hidden)
        self.output_dropout = nn.Dropout(output_dropout)
        self.proj = nn.Linear(2 * word_hidden, num_tags)
        self.crf = LinearChainCRF(num_tags) if crf else SoftmaxTagger()

    def forward(self, words: torch.Tensor, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """words (B, T), chars (B, T, L) int64 with 0 = padding; mask (B, T) bool -> (B, T, K)."""
        x = self.word_embed(words)
        if self.char_encoder is not None:
            x = torch.cat([x, self.char_encoder(chars)], dim=-1)
        out = self.lstm(self.dropout(x), mask.sum(1))
        return self.proj(self.output_dropout(out))


@register_model("bilstm_crf", BiLstmCrfConfig, task="ner")
def build_bilstm_crf(scale: float = 1.0, vocab_size: int = 2, num_chars: int = 2, num_tags: int = 1,
                     char_encoder: str = "lstm", dropout: float = DROPOUT,
                     output_dropout: float = 0.0, crf: bool = True) -> BiLstmCrf:
    """BiLSTM-CRF at width multiplier ``scale`` (1.0: Lample et al. 2016, or Ma & Hovy's char CNN)."""
    if char_encoder not in ("lstm", "cnn", "none"):
        raise ValueError(f"char_encoder={char_encoder!r} is invalid; choose lstm, cnn or none")
    for key, value in (("dropout", dropout), ("output_dropout", output_dropout)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{key}={value!r} is invalid: it must be in [0, 1)")
    cnn = char_encoder == "cnn"
    return BiLstmCrf(
        vocab_size=vocab_size,
        num_chars=num_chars,
        num_tags=num_tags,
        word_dim=scaled(WORD_DIM, scale),
        word_hidden=scaled(WORD_HIDDEN, scale),
        char_encoder=char_encoder,
        char_dim=scaled(CNN_CHAR_DIM if cnn else CHAR_DIM, scale),
        char_hidden=scaled(CNN_FILTERS if cnn else CHAR_HIDDEN, scale),
        cnn_width=CNN_WIDTH,
        dropout=dropout,
        output_dropout=output_dropout,
        crf=crf,
    )
