"""Text helpers shared by the text workloads (NER, QA, translation): vocabularies, padding, batching.

Nothing here knows a benchmark. Conventions every text workload relies on:

- a :class:`Vocab` reserves id 0 for ``<pad>`` and id 1 for ``<unk>``, and is built from the
  training split only (the evaluation sets never add entries), so an evaluation token unseen in
  training maps to ``<unk>`` as it would for a deployed model;
- batches are padded to a multiple of a small number (:func:`pad_to_multiple`), so a run meets
  only a handful of distinct shapes and the per-shape FLOP count (counted once per shape) stays
  cheap and exact;
- :func:`length_buckets` groups sequences of similar length into the same batch (sorting within
  chunks of batches, then shuffling the batch order), which cuts padding without giving up the
  randomness of the epoch order.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable, Optional, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


class Vocab:
    """String <-> id map with ``<pad>`` = 0 and ``<unk>`` = 1.

    Args:
        counts: how often each item occurs in the training split.
        min_freq: items seen fewer times are left out (they map to ``<unk>``).
        max_size: keep at most this many items (most frequent first, ties by first occurrence
            in ``counts``); the two specials are not counted.
    """

    def __init__(self, counts: Counter, min_freq: int = 1, max_size: Optional[int] = None) -> None:
        if min_freq < 1:
            raise ValueError(f"min_freq={min_freq} is invalid: it must be >= 1")
        kept = [item for item, n in counts.most_common(max_size) if n >= min_freq]
        self.itos: list[str] = [PAD, UNK, *(item for item in kept if item not in (PAD, UNK))]
        self.stoi: dict[str, int] = {item: i for i, item in enumerate(self.itos)}
        self.counts = counts

    @classmethod
    def build(cls, items: Iterable[str], min_freq: int = 1, max_size: Optional[int] = None) -> "Vocab":
        """A vocabulary of the items of a training split (one item per occurrence)."""
        return cls(Counter(items), min_freq=min_freq, max_size=max_size)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, item: str) -> bool:
        return item in self.stoi

    def id(self, item: str) -> int:
        return self.stoi.get(item, UNK_ID)

    def ids(self, items: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(item, UNK_ID) for item in items]

    def singleton_ids(self) -> list[int]:
        """Ids of the items seen exactly once in training (for word dropout to ``<unk>``)."""
        return [self.stoi[item] for item, n in self.counts.items() if n == 1 and item in self.stoi]


def pad_to_multiple(length: int, multiple: int, cap: Optional[int] = None) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (at least one multiple), then capped.

    >>> pad_to_multiple(13, 8), pad_to_multiple(0, 8), pad_to_multiple(21, 8, cap=16)
    (16, 8, 16)
    """
    if multiple < 1:
        raise ValueError(f"multiple={multiple} is invalid: it must be >= 1")
    padded = max(1, math.ceil(length / multiple)) * multiple
    return padded if cap is None else min(padded, cap)


def pad_2d(rows: Sequence[Sequence[int]], length: int, pad: int = PAD_ID) -> torch.Tensor:
    """(len(rows), length) int64 tensor; rows are truncated or right-padded with ``pad``."""
    out = torch.full((len(rows), length), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:length]
        if row:
            out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def pad_3d(rows: Sequence[Sequence[Sequence[int]]], length: int, inner: int, pad: int = PAD_ID) -> torch.Tensor:
    """(len(rows), length, inner) int64 tensor of nested sequences (e.g. characters of words),
    truncated or right-padded with ``pad`` on both inner axes."""
    out = torch.full((len(rows), length, inner), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        for j, item in enumerate(row[:length]):
            item = item[:inner]
            if item:
                out[i, j, : len(item)] = torch.as_tensor(item, dtype=torch.long)
    return out


def length_buckets(
    lengths: Sequence[int],
    batch_size: int,
    rng: torch.Generator,
    chunk_batches: int = 50,
    drop_last: bool = True,
) -> list[list[int]]:
    """One epoch of batches (lists of indices) of sequences of similar length.

    The indices are shuffled, cut into chunks of ``chunk_batches * batch_size``, sorted by length
    within each chunk and cut into batches; the batch order is then shuffled. Every draw comes
    from ``rng``, so an epoch is reproducible from the generator's state. With ``drop_last`` the
    one ragged batch (the epoch's remainder, taken from the shuffled order before chunking) is
    left out, so every batch holds exactly ``batch_size`` sequences.
    """
    if batch_size < 1 or chunk_batches < 1:
        raise ValueError(f"batch_size={batch_size} and chunk_batches={chunk_batches} must be >= 1")
    order = torch.randperm(len(lengths), generator=rng).tolist()
    if drop_last:
        order = order[: len(order) - len(order) % batch_size]
    chunk = chunk_batches * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    perm = torch.randperm(len(batches), generator=rng).tolist()
    return [batches[i] for i in perm]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches for evaluation: indices sorted by length, cut into ``batch_size``
    (the last batch may be smaller); the caller restores the original order from the indices."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def normalize_token(token: str, lowercase: bool = False, zero_digits: bool = False) -> str:
    """The key a word vocabulary stores: optionally lowercased and with every digit set to 0
    (as Lample et al. 2016's tagger does with ``lower`` and ``zeros``)."""
    if lowercase:
        token = token.lower()
    if zero_digits:
        token = "".join("0" if c.isdigit() else c for c in token)
    return token


def unwrap(model: torch.nn.Module, attr: str, what: str) -> torch.nn.Module:
    """The module under ``model``'s wrappers (DistributedDataParallel's ``module``, torch.compile's
    ``_orig_mod``) that has ``attr``: the methods a text workload calls beside ``forward``
    (a CRF's decoder, a translation model's decoding step). ``what`` names the expected kind of model."""
    while not hasattr(model, attr):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise AttributeError(f"{type(model).__name__} has no {attr!r}: not {what}")
        model = inner
    return model


def token_normalizer(lowercase: bool, zero_digits: bool) -> Callable[[str], str]:
    return lambda token: normalize_token(token, lowercase=lowercase, zero_digits=zero_digits)


def cached_tokenizer(cache_dir, name: str, train: Callable[[], "object"]) -> tuple:
    """``(tokenizer, cache file or None, cache hit)``: a ``tokenizers`` tokenizer read from
    ``cache_dir/name`` when it is there and readable, else ``train()`` and written there atomically.

    ``name`` must carry a hash of everything the tokenizer depends on (its texts and settings).
    A damaged file is trained again; an unwritable cache costs a retraining next time, nothing else.
    ``cache_dir`` None: trained every time, no file.
    """
    import logging
    from pathlib import Path

    from tokenizers import Tokenizer

    from common.atomic import write_atomic

    log = logging.getLogger(__name__)
    if cache_dir is None:
        return train(), None, False
    path = Path(cache_dir) / name
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path)), path, True
        except Exception as exc:  # noqa: BLE001  (a damaged cache file is retrained, not fatal)
            log.warning("tokenizer cache %s unreadable (%s): training again", path, exc)
    tokenizer = train()
    try:
        write_atomic(path, tokenizer.to_str())
    except OSError as exc:
        log.warning("tokenizer cache %s not written (%s)", path, exc)
        return tokenizer, None, False
    return tokenizer, path, False
