"""Machine translation, English -> French: the ``wmt2014_en_fr`` row of the literature.

Data, in the two layouts users have (``data.format``):

- ``tsv``: one pair per line, ``source TAB target [TAB attribution ...]``: the Tatoeba/Anki
  ``fra.txt`` layout (English, tab, French, optional attribution). It has no split, so one is
  drawn: every line's English side (column 0) is normalised (NFKC, case-folded, whitespace
  collapsed) and hashed with SHA-256; the distinct English sentences, in hash order, go whole
  to the test set until it holds at least ``data.test_size`` pairs, then to the dev set until it
  holds ``data.dev_size``, and the rest train. So every translation of one English sentence
  lands in the same split, and the split depends on the sentences only, not on the file's order.
- ``plain``: WMT-style parallel files, one sentence per line, ``<split>.<lang>``
  (``train.en``/``train.fr``, ``newstest2014.en``/``newstest2014.fr``; any split names).

Malformed lines (a tsv line without the columns, a pair with an empty side) are left out, counted
by kind in ``dataset_details`` with the first few line numbers, and logged once; a missing file is
a one-line :class:`DataNotFoundError` naming the path.

Sub-words: a joint byte-pair encoding (Sennrich et al., ACL 2016) of both languages, trained on
the training split only with the ``tokenizers`` library, on whitespace-split words with the
SentencePiece-style ``▁`` word marker (Metaspace), so decoding restores the text exactly (runs of
spaces collapse to one). The trained tokenizer is cached under ``workload.cache_dir`` by a hash of
its training text and settings. ``<pad>`` = 0 and ``<unk>`` = 1 as in :mod:`harness.workloads.text`,
then ``<s>`` and ``</s>``.

Metric: corpus BLEU with ``sacrebleu`` on the detokenised output against the raw references
(its default 13a tokenisation, mixed case, one reference), chrF beside it; the paper's error is
1 - BLEU/100. ``hypotheses.txt``, ``references.txt`` and ``sources.txt`` (one sentence per line,
same order) go into the run folder, so ``sacrebleu references.txt < hypotheses.txt`` re-scores it.

Decoding is greedy, batched over sources sorted by length, with the decoder's self-attention keys
and values cached; a sentence stops at ``</s>`` or after ``decode_len_a x source tokens +
decode_len_b`` tokens (fairseq's ``max_len_a``/``max_len_b``). Its FLOPs are counted with fvcore
on what runs: the encoder (and the cross-attention keys/values) once per batch shape, and one
decoder step per (batch, source length, position) shape. A step's count is affine in the number
of cached positions (only the self-attention's Q·Kᵀ and attention·V grow with it), so each
(batch, source length) is counted at two positions and the others follow exactly (a test checks
the identity against direct counts).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.device import to_device
from harness.errors import DataNotFoundError, UserError
from harness.workload import DataConfig, Evaluation, Workload, WorkloadConfig, data_root, register_workload
from harness.workloads.text import (PAD, PAD_ID, UNK, UNK_ID, length_buckets, pad_2d, pad_to_multiple, sorted_batches,
                                   cached_tokenizer, unwrap)

log = logging.getLogger(__name__)

BOS, EOS = "<s>", "</s>"
BOS_ID, EOS_ID = 2, 3
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0..3, in this order
#: SentencePiece's word-boundary marker, used by the tokenizers library's Metaspace.
WORD_MARK = "\u2581"
#: How many malformed line numbers are kept per kind in dataset_details.
MAX_EXAMPLES = 5
#: Bump when the tokenizer's recipe changes, so old caches are not reused.
BPE_RECIPE = "bpe-metaspace-v1"

#: A pair of sentences (source, target).
Pair = tuple[str, str]


class TextFormat(str, Enum):
    """Layout of the parallel text under ``data.root``."""

    tsv = "tsv"  # source TAB target [TAB ...] per line (Tatoeba / Anki fra.txt)
    plain = "plain"  # <split>.<lang> files, one sentence per line (WMT)


@dataclass
class TranslationConfig(WorkloadConfig):
    """``workload.*`` of ``workload=translation``: sub-words, batching, loss and decoding."""

    name: str = "translation"
    vocab_size: int = 8000  # joint BPE vocabulary, special tokens included
    bpe_min_frequency: int = 2  # merges of pairs seen fewer times are not learned
    # trained tokenizers are kept here by a hash of their inputs and settings; null = no cache
    cache_dir: Optional[str] = "results/cache/translation"
    max_train_tokens: int = 64  # training pairs with a longer side (BPE tokens) are left out, counted
    label_smoothing: float = 0.1  # Vaswani et al. 2017, sec. 5.4 (Szegedy et al. 2016)
    pad_multiple: int = 8  # source and target lengths are padded to a multiple of this
    bucket_chunk_batches: int = 50  # length bucketing sorts within chunks of this many batches
    decode_len_a: float = 1.5  # greedy decoding stops after a x source tokens + b
    decode_len_b: int = 5
    eval_dev: bool = False  # also decode the dev set (dev_bleu, dev_chrf): a second decoding pass


@dataclass
class TranslationDataConfig(DataConfig):
    """``data.*`` for ``workload=translation``: parallel text in one of two layouts."""

    name: str = "tatoeba_en_fr"
    format: TextFormat = TextFormat.tsv
    source_lang: str = "en"
    target_lang: str = "fr"
    # format=tsv: one file, its columns, and the hash split's sizes (pairs)
    file: str = "fra.txt"
    source_column: int = 0
    target_column: int = 1
    test_size: int = 2000
    dev_size: int = 2000
    # format=plain: <split>.<source_lang> and <split>.<target_lang> under data.root
    train_split: str = "train"
    dev_split: Optional[str] = "newstest2013"  # null: no dev set
    test_split: str = "newstest2014"


# ---------------------------------------------------------------- reading
@dataclass
class Malformed:
    """Left-out lines of one file, by kind, with the first few line numbers of each kind."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, kind: str, lineno: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        seen = self.examples.setdefault(kind, [])
        if len(seen) < MAX_EXAMPLES:
            seen.append(lineno)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def details(self) -> dict[str, Any]:
        return {"total": self.total, **{k: {"lines": n, "first_line_numbers": self.examples[k]}
                                        for k, n in sorted(self.counts.items())}}


def _lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file; one-line errors when it is not."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found ({what}; point data.root at the folder that holds it)")
    with open(path, encoding="utf-8", errors="strict", newline=None) as handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                yield lineno, line.rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a line)") from None


def read_tsv(path: Path, source_column: int = 0, target_column: int = 1, key_column: int = 0,
             limit: Optional[int] = None) -> tuple[list[Pair], list[str], Malformed]:
    """Pairs of a tab-separated file, the text of its ``key_column`` per pair (the split's key), and
    the malformed lines left out: ``missing_column`` (too few tab-separated fields, including no
    tab at all) and ``empty_side`` (a source or target that is blank). Stops after ``limit`` pairs."""
    need = max(source_column, target_column, key_column) + 1
    pairs: list[Pair] = []
    keys: list[str] = []
    bad = Malformed()
    for lineno, line in _lines(path, "tab-separated sentence pairs"):
        cols = line.split("\t")
        if len(cols) < need:
            bad.add("missing_column", lineno)
            continue
        src, tgt = cols[source_column].strip(), cols[target_column].strip()
        if not src or not tgt:
            bad.add("empty_side", lineno)
            continue
        pairs.append((src, tgt))
        keys.append(cols[key_column].strip())
        if limit is not None and len(pairs) >= limit:
            break
    return pairs, keys, bad


def read_parallel(source: Path, target: Path, limit: Optional[int] = None) -> tuple[list[Pair], Malformed]:
    """Pairs of two line-aligned files (WMT plain text); a line pair with a blank side is left out
    as ``empty_side``. Files of different lengths are an error. Stops after ``limit`` pairs."""
    pairs: list[Pair] = []
    bad = Malformed()
    src_lines, tgt_lines = _lines(source, "parallel text"), _lines(target, "parallel text")
    if not target.is_file():  # say so before reading a large source file
        raise DataNotFoundError(f"{target}: not found (parallel text; point data.root at the folder that holds it)")
    while True:
        a, b = next(src_lines, None), next(tgt_lines, None)
        if a is None or b is None:
            break
        lineno, src, tgt = a[0], a[1].strip(), b[1].strip()
        if not src or not tgt:
            bad.add("empty_side", lineno)
        else:
            pairs.append((src, tgt))
            if limit is not None and len(pairs) >= limit:
                return pairs, bad
    if a is not None or b is not None:
        longer, lineno = (source, a[0]) if a is not None else (target, b[0])
        raise UserError(f"{source} and {target} are not line-aligned: {longer} goes on at line {lineno} "
                        f"after the other ends")
    return pairs, bad


# ---------------------------------------------------------------- the split
def split_key(sentence: str) -> str:
    """The text that decides a pair's split: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", sentence).casefold().split())


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def hash_split(keys: Sequence[str], test_size: int, dev_size: int) -> tuple[list[int], list[int], list[int]]:
    """(train, dev, test) indices of the pairs whose split keys are ``keys``.

    Distinct normalised keys (:func:`split_key`) are ordered by SHA-256; whole groups go to the test
    set until it holds at least ``test_size`` pairs, then to the dev set until ``dev_size``, the rest
    train. Each list keeps the file's order.
    """
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(split_key(key), []).append(i)
    order = sorted(groups, key=lambda k: (_key_hash(k), k))
    test: list[int] = []
    dev: list[int] = []
    train: list[int] = []
    for key in order:
        if len(test) < test_size:
            test.extend(groups[key])
        elif len(dev) < dev_size:
            dev.extend(groups[key])
        else:
            train.extend(groups[key])
    return sorted(train), sorted(dev), sorted(test)


#: (train, dev, test, malformed lines by file or split)
Splits = tuple[list[Pair], list[Pair], list[Pair], dict[str, Malformed]]


def _read_tsv_splits(dcfg: Any, root: Path, details: dict[str, Any]) -> Splits:
    """(train, dev, test, malformed lines by file) of a tab-separated file, split by :func:`hash_split`."""
    path = root / str(dcfg.file)
    pairs, keys, bad = read_tsv(path, int(dcfg.source_column), int(dcfg.target_column), key_column=0)
    train_i, dev_i, test_i = hash_split(keys, int(dcfg.test_size), int(dcfg.dev_size))
    details.update(file=path.name, pairs_read=len(pairs), split=dict(
        rule=("SHA-256 of the normalised first column (NFKC, case-folded, whitespace collapsed): distinct "
              "sentences in hash order, whole, to test until >= test_size pairs, then to dev until "
              ">= dev_size, the rest to train; every translation of a sentence shares its split"),
        test_size=int(dcfg.test_size), dev_size=int(dcfg.dev_size),
        train_pairs=len(train_i), dev_pairs=len(dev_i), test_pairs=len(test_i),
        test_sentences=len({split_key(keys[i]) for i in test_i}),
        dev_sentences=len({split_key(keys[i]) for i in dev_i})))
    return ([pairs[i] for i in train_i], [pairs[i] for i in dev_i], [pairs[i] for i in test_i],
            {path.name: bad})


def _read_plain_splits(dcfg: Any, root: Path, details: dict[str, Any]) -> Splits:
    """(train, dev, test, malformed lines by split) of WMT-style ``<split>.<lang>`` files."""
    def read(split: str, limit: Optional[int] = None) -> list[Pair]:
        source, target = (root / f"{split}.{lang}" for lang in (dcfg.source_lang, dcfg.target_lang))
        pairs, malformed[split] = read_parallel(source, target, limit=limit)
        return pairs

    malformed: dict[str, Malformed] = {}
    train = read(str(dcfg.train_split), limit=dcfg.train_subset)
    test = read(str(dcfg.test_split))
    dev = read(str(dcfg.dev_split)) if dcfg.dev_split else []
    details.update(split=dict(rule="the named files", train=str(dcfg.train_split), dev=dcfg.dev_split,
                              test=str(dcfg.test_split), train_pairs=len(train), dev_pairs=len(dev),
                              test_pairs=len(test)))
    return train, dev, test, malformed


# ---------------------------------------------------------------- sub-words
def bpe_cache_key(texts: Iterable[str], vocab_size: int, min_frequency: int) -> str:
    """SHA-256 of the tokenizer's training text and settings (and the library's version)."""
    import tokenizers

    digest = hashlib.sha256()
    settings = dict(recipe=BPE_RECIPE, vocab_size=vocab_size, min_frequency=min_frequency,
                    special=list(SPECIAL_TOKENS), tokenizers=tokenizers.__version__)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def train_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int):
    """A joint BPE tokenizer (``tokenizers``) trained on ``texts``, words split at spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=WORD_MARK, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=WORD_MARK, prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    # the trainer gives the special tokens the first ids, in order: <pad> 0, <unk> 1, <s> 2, </s> 3
    if [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"BPE special tokens got ids {[tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]}")
    return tokenizer


def cached_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int, cache_dir: Optional[Path]):
    """(tokenizer, its cache file, whether it was a cache hit): trained once per input hash
    (every time when ``cache_dir`` is None; the file is then None)."""
    key = bpe_cache_key(texts, vocab_size, min_frequency) if cache_dir is not None else ""
    return cached_tokenizer(cache_dir, f"bpe-{key[:20]}.json", lambda: train_bpe(texts, vocab_size, min_frequency))


# ---------------------------------------------------------------- data
@dataclass
class MtBatch:
    """A padded batch: source (B, S), target input ``<s> y`` and output ``y </s>`` (B, T)."""

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    num_sentences: int
    num_src_tokens: int  # real (unpadded) source tokens, </s> included
    num_tgt_tokens: int  # real target tokens predicted, </s> included


class MtSplit:
    """One split: raw text (for the metric and the files) and sub-word ids (</s> appended)."""

    def __init__(self, pairs: Sequence[Pair], tokenizer: Any) -> None:
        self.sources = [s for s, _ in pairs]
        self.references = [t for _, t in pairs]
        self.src_ids = encode(tokenizer, self.sources)
        self.tgt_ids = encode(tokenizer, self.references)
        self.src_lengths = [len(x) for x in self.src_ids]

    def __len__(self) -> int:
        return len(self.sources)

    def keep(self, index: Sequence[int]) -> None:
        for name in ("sources", "references", "src_ids", "tgt_ids", "src_lengths"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in index])


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Sub-word ids of each text, ``</s>`` appended."""
    return [e.ids + [EOS_ID] for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """Text of ids up to the first ``</s>`` (special tokens dropped)."""
    ids = list(ids)
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return tokenizer.decode(ids, skip_special_tokens=True)


class TranslationData:
    """Train/dev/test pairs, the joint BPE (from the training split) and the batching."""

    def __init__(self, cfg: Any, device: torch.device) -> None:
        wcfg, dcfg = cfg.workload, cfg.data
        self.device = device
        self.name = str(dcfg.name)
        self.pad_multiple = int(wcfg.pad_multiple)
        self.chunk_batches = int(wcfg.bucket_chunk_batches)
        self._check(wcfg, dcfg)
        root = data_root(dcfg, "the folder holding the parallel text")
        self.source = str(root)
        details: dict[str, Any] = {"format": TextFormat(dcfg.format).value, "source_lang": str(dcfg.source_lang),
                                   "target_lang": str(dcfg.target_lang)}
        read = _read_tsv_splits if TextFormat(dcfg.format) is TextFormat.tsv else _read_plain_splits
        train, dev, test, malformed = read(dcfg, root, details)
        left_out = sum(b.total for b in malformed.values())
        details["malformed_lines"] = {"total": left_out, **{k: b.details() for k, b in malformed.items() if b.total}}
        if left_out:
            log.warning("translation data: %d malformed line(s) left out (%s)", left_out,
                        "; ".join(f"{k}: " + ", ".join(f"{n} {kind}" for kind, n in b.counts.items())
                                  for k, b in malformed.items() if b.total))
        if dcfg.train_subset is not None:
            train = train[: dcfg.train_subset]
        if dcfg.eval_subset is not None:
            test, dev = test[: dcfg.eval_subset], dev[: dcfg.eval_subset]
        if not train or not test:
            raise UserError(f"data.root={dcfg.root}: no {'training' if not train else 'test'} pairs after the split")

        # Sub-words from the training split only, both languages.
        cache_dir = None if wcfg.cache_dir is None else Path(str(wcfg.cache_dir)).expanduser()
        started = time.perf_counter()
        self.tokenizer, cache_file, hit = cached_bpe([t for pair in train for t in pair], int(wcfg.vocab_size),
                                                     int(wcfg.bpe_min_frequency), cache_dir)
        self.vocab_size = self.tokenizer.get_vocab_size()
        details["bpe"] = dict(library="tokenizers", vocab_size=self.vocab_size,
                              requested_vocab_size=int(wcfg.vocab_size),
                              min_frequency=int(wcfg.bpe_min_frequency), trained_on="training split, both sides",
                              cache_file=None if cache_file is None else str(cache_file), cache_hit=hit,
                              seconds=round(time.perf_counter() - started, 3))
        self.train = MtSplit(train, self.tokenizer)
        longest = int(wcfg.max_train_tokens)
        kept = [i for i in range(len(self.train))
                if len(self.train.src_ids[i]) <= longest and len(self.train.tgt_ids[i]) <= longest]
        details["train_pairs_too_long"] = {"max_tokens": longest, "left_out": len(self.train) - len(kept)}
        self.train.keep(kept)
        self.train_tgt_lengths = [len(x) for x in self.train.tgt_ids]
        self.max_target = max(self.train_tgt_lengths, default=0)
        self.test = MtSplit(test, self.tokenizer)
        self.dev = MtSplit(dev, self.tokenizer) if dev else None
        self.num_train = len(self.train)
        self.num_eval = len(self.test)
        if self.num_train == 0:
            raise UserError(f"workload.max_train_tokens={longest} leaves no training pair")
        details.update(train_pairs=self.num_train, dev_pairs=len(dev), test_pairs=self.num_eval)
        self.details = details

    @staticmethod
    def _check(wcfg: Any, dcfg: Any) -> None:
        for key, value, low in (("workload.vocab_size", wcfg.vocab_size, len(SPECIAL_TOKENS) + 1),
                                ("workload.bpe_min_frequency", wcfg.bpe_min_frequency, 1),
                                ("workload.max_train_tokens", wcfg.max_train_tokens, 2),
                                ("workload.pad_multiple", wcfg.pad_multiple, 1),
                                ("workload.bucket_chunk_batches", wcfg.bucket_chunk_batches, 1),
                                ("workload.decode_len_b", wcfg.decode_len_b, 0),
                                ("data.test_size", dcfg.test_size, 1), ("data.dev_size", dcfg.dev_size, 0),
                                ("data.source_column", dcfg.source_column, 0),
                                ("data.target_column", dcfg.target_column, 0)):
            if value < low:
                raise UserError(f"{key}={value} is invalid: it must be >= {low}")
        if not wcfg.decode_len_a >= 0:
            raise UserError(f"workload.decode_len_a={wcfg.decode_len_a} is invalid: it must be >= 0")
        if not 0.0 <= wcfg.label_smoothing < 1.0:
            raise UserError(f"workload.label_smoothing={wcfg.label_smoothing} is invalid: it must be in [0, 1)")
        if dcfg.source_column == dcfg.target_column:
            raise UserError(f"data.source_column and data.target_column are both {dcfg.source_column}")

    # ------------------------------------------------------------ batches
    def source_batch(self, split: MtSplit, index: Sequence[int]) -> torch.Tensor:
        """(B, S) source ids of ``index``, S the longest rounded up to ``pad_multiple``."""
        rows = [split.src_ids[i] for i in index]
        return pad_2d(rows, pad_to_multiple(max(map(len, rows)), self.pad_multiple))

    def make_batch(self, split: MtSplit, index: Sequence[int]) -> MtBatch:
        src = self.source_batch(split, index)
        targets = [split.tgt_ids[i] for i in index]
        t_len = pad_to_multiple(max(map(len, targets)), self.pad_multiple)
        tgt_in = pad_2d([[BOS_ID] + y[:-1] for y in targets], t_len)
        tgt_out = pad_2d(targets, t_len)
        to = lambda x: to_device(x, self.device)  # noqa: E731
        return MtBatch(to(src), to(tgt_in), to(tgt_out), len(index),
                       sum(split.src_lengths[i] for i in index), sum(map(len, targets)))

    def train_batches(self, batch_size: int, rng: torch.Generator) -> Iterator[MtBatch]:
        """One epoch of ``batch_size``-pair batches of similar lengths, in an order drawn from ``rng``;
        the ragged remainder is dropped.

        Pairs are sorted by source length, then target length (within chunks of
        ``bucket_chunk_batches`` batches), so a batch's sources and targets are both nearly of one
        length: on Tatoeba, 8% of the positions are padding at ``pad_multiple=2`` and chunks of
        1,000 batches, against 26% when sorting by the summed length and 44% at ``pad_multiple=8``.
        """
        if batch_size > self.num_train:
            raise UserError(f"trainer.batch_size={batch_size} is larger than the {self.num_train} training pairs")
        # one integer per pair that orders by (source length, target length)
        lengths = [s * (self.max_target + 1) + t for s, t in zip(self.train.src_lengths, self.train_tgt_lengths)]
        for index in length_buckets(lengths, batch_size, rng, self.chunk_batches, drop_last=True):
            yield self.make_batch(self.train, index)


# ---------------------------------------------------------------- FLOPs of greedy decoding
class _EncodeProbe(nn.Module):
    """``model.encode`` as a module (what fvcore traces): encoder + cross-attention keys/values."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor) -> tuple:
        mask, cross = self.model.encode(src)
        return (mask, *cross)


class _StepProbe(nn.Module):
    """``model.decode_step`` as a module: one position for a batch, given the caches."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        n = len(kv) // 2
        logits, _ = self.model.decode_step(tokens, mask, list(kv[:n]), list(kv[n:]))
        return logits


class DecodeFlops:
    """Forward multiply-adds of greedy decoding, counted with fvcore once per shape and cached.

    ``encode_macs(model, src)`` for the encoder pass of a (B, S) batch; ``steps_macs(model, src, n)``
    for the n decoder steps of that batch: a step at position t (t cached positions) costs
    ``m0 + t x slope`` exactly, so m0 and slope are counted at t = 0 and t = 1 per (B, S).
    """

    METHOD = ("greedy decoding, counted as run: fvcore (harness.measure.flops.count_forward_macs, 2 FLOPs per "
              "multiply-add) of the encoder + cross-attention keys/values once per (batch, source length) and of "
              "each decoder step (cached self-attention keys/values) per (batch, source length, position), "
              "the step count being affine in the position (counted at two positions per batch shape); "
              "every decoded batch runs until all its sentences end")

    def __init__(self) -> None:
        self.encode_cache: dict[tuple, float] = {}
        self.step_cache: dict[tuple, tuple[float, float]] = {}
        self.unsupported_ops: dict[str, int] = {}
        self.count_time_s = 0.0

    def _count(self, module: nn.Module, inputs: tuple) -> float:
        from harness.measure.flops import count_forward_macs

        started = time.perf_counter()
        result = count_forward_macs(module, inputs, num_samples=1)
        for op, n in result.unsupported_ops.items():
            self.unsupported_ops[op] = self.unsupported_ops.get(op, 0) + n
        self.count_time_s += time.perf_counter() - started
        return result.macs_per_sample

    def encode_macs(self, model: nn.Module, src: torch.Tensor) -> float:
        key = (tuple(src.shape), str(src.dtype))
        if key not in self.encode_cache:
            self.encode_cache[key] = self._count(_EncodeProbe(model), (src,))
        return self.encode_cache[key]

    def step_macs(self, model: nn.Module, src: torch.Tensor, position: int) -> float:
        """Multiply-adds of one decoder step at ``position`` for a batch with sources ``src``."""
        m0, slope = self._step_line(model, src)
        return m0 + slope * position

    def steps_macs(self, model: nn.Module, src: torch.Tensor, num_steps: int) -> float:
        """Multiply-adds of steps 0 .. num_steps - 1: sum of m0 + slope x t."""
        m0, slope = self._step_line(model, src)
        return num_steps * m0 + slope * num_steps * (num_steps - 1) / 2

    def count_step(self, model: nn.Module, src: torch.Tensor, position: int) -> float:
        """fvcore's count of one decoder step at ``position`` (no cache; for checks)."""
        with torch.no_grad():
            mask, cross = model.encode(src)
            b = src.shape[0]
            cache = [c.new_zeros(c.shape[0], c.shape[1], position, c.shape[3])
                     for c in model.empty_cache(b, src.device, cross[0].dtype if cross else torch.float32)]
        tokens = torch.full((b, 1), BOS_ID, dtype=torch.long, device=src.device)
        return self._count(_StepProbe(model), (tokens, mask, *cross, *cache))

    def _step_line(self, model: nn.Module, src: torch.Tensor) -> tuple[float, float]:
        key = (tuple(src.shape), str(src.dtype))
        if key not in self.step_cache:
            m0, m1 = (self.count_step(model, src, t) for t in (0, 1))
            self.step_cache[key] = (m0, m1 - m0)
        return self.step_cache[key]


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, max_lengths: Sequence[int]) -> tuple[list[list[int]], int]:
    """Greedy outputs (ids, ``</s>`` excluded) of a source batch, and the decoder steps run.

    Sentence i stops at ``</s>`` or after ``max_lengths[i]`` tokens; the batch runs until every
    sentence has stopped.
    """
    b = src.shape[0]
    mask, cross = model.encode(src)
    cache = model.empty_cache(b, src.device, cross[0].dtype if cross else torch.float32)
    tokens = torch.full((b, 1), BOS_ID, dtype=torch.long, device=src.device)
    limit = torch.tensor(list(max_lengths), device=src.device)
    done = limit <= 0
    out: list[torch.Tensor] = []
    steps = 0
    for t in range(max(max_lengths, default=0)):
        logits, cache = model.decode_step(tokens, mask, cross, cache)
        steps += 1
        nxt = logits.argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
        out.append(nxt)
        done = done | (nxt == EOS_ID) | (limit <= t + 1)
        if bool(done.all()):
            break
        tokens = nxt.unsqueeze(1)
    rows = torch.stack(out, dim=1).tolist() if out else [[] for _ in range(b)]
    hyps = []
    for row, n in zip(rows, max_lengths):
        row = row[:n]
        if EOS_ID in row:
            row = row[: row.index(EOS_ID)]
        hyps.append([x for x in row if x != PAD_ID])
    return hyps, steps


# ---------------------------------------------------------------- metric and files
def bleu_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, float, str, str]:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, mixed case, exponential smoothing) and chrF
    of ``hypotheses`` against one reference each, with both signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    refs = [list(references)]
    b = bleu.corpus_score(list(hypotheses), refs)
    c = chrf.corpus_score(list(hypotheses), refs)
    return float(b.score), float(c.score), str(bleu.get_signature()), str(chrf.get_signature())


def lines_file(lines: Sequence[str]) -> str:
    """One sentence per line (a newline inside a sentence becomes a space), newline-terminated."""
    return "".join(" ".join(line.splitlines()) + "\n" for line in lines)


# ---------------------------------------------------------------- the workload
@register_workload
class Translation(Workload):
    """English -> French translation: train on the training split, BLEU of greedy decoding on the test set."""

    name = "translation"
    benchmark = "wmt2014_en_fr"
    metric_name = "bleu"
    prediction_files = ("hypotheses.txt", "references.txt", "sources.txt")
    config_class = TranslationConfig
    data_config_class = TranslationDataConfig

    def __init__(self, cfg: Any, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.decode_flops = DecodeFlops()

    def build_data(self) -> TranslationData:
        return TranslationData(self.cfg, self.device)

    def build_model(self, data: TranslationData) -> nn.Module:
        return self.registered_model(vocab_size=data.vocab_size, pad_id=PAD_ID)

    def model_inputs(self, batch: MtBatch) -> tuple:
        return batch.src, batch.tgt_in

    def batch_size_of(self, batch: MtBatch) -> int:
        return batch.num_sentences

    def positions_of(self, batch: MtBatch) -> tuple[int, int]:
        """Real source + target tokens, and the positions the padded batch computes on."""
        b = batch.num_sentences
        return batch.num_src_tokens + batch.num_tgt_tokens, b * (int(batch.src.shape[1]) + int(batch.tgt_in.shape[1]))

    def loss(self, model: nn.Module, batch: MtBatch) -> tuple[torch.Tensor, int]:
        """Sum of the label-smoothed cross-entropies of the real target tokens, and their number."""
        logits = model(*self.model_inputs(batch))
        total = F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID,
                                label_smoothing=float(self.cfg.workload.label_smoothing), reduction="sum")
        return total, batch.num_tgt_tokens

    def max_lengths(self, lengths: Sequence[int], cap: float) -> list[int]:
        """Most output tokens per source of ``lengths`` tokens: a x length + b (fairseq's max_len_a/b), capped."""
        a, b = float(self.cfg.workload.decode_len_a), int(self.cfg.workload.decode_len_b)
        return [int(min(cap, math.ceil(a * n + b))) for n in lengths]

    def translate(self, model: nn.Module, data: TranslationData, split: MtSplit) -> tuple[list[str], float]:
        """Greedy translations of ``split`` (in its order), and the forward multiply-adds decoding ran."""
        inner = unwrap(model, "decode_step", "a translation model")
        cap = getattr(inner, "max_positions", None)
        cap = math.inf if cap is None else cap - 1  # <s> takes the first position
        out: list[str] = [""] * len(split)
        macs = 0.0
        for index in sorted_batches(split.src_lengths, int(self.cfg.trainer.eval_batch_size)):
            src = data.source_batch(split, index).to(self.device)
            limits = self.max_lengths([split.src_lengths[i] for i in index], cap)
            hyps, steps = greedy_decode(inner, src, limits)
            macs += self.decode_flops.encode_macs(inner, src) + self.decode_flops.steps_macs(inner, src, steps)
            for i, ids in zip(index, hyps):
                out[i] = decode(data.tokenizer, ids)
        return out, macs

    def evaluate(self, model: nn.Module, data: TranslationData) -> Evaluation:
        hyps, macs = self.translate(model, data, data.test)
        bleu, chrf, bleu_sig, chrf_sig = bleu_chrf(hyps, data.test.references)
        metrics = {self.metric_name: bleu, "chrf": chrf}
        decoded = len(data.test)
        if self.cfg.workload.eval_dev and data.dev is not None:
            dev_hyps, dev_macs = self.translate(model, data, data.dev)
            metrics["dev_bleu"], metrics["dev_chrf"], _, _ = bleu_chrf(dev_hyps, data.dev.references)
            macs += dev_macs
            decoded += len(data.dev)
        a, b = self.cfg.workload.decode_len_a, self.cfg.workload.decode_len_b
        details = dict(bleu_signature=bleu_sig, chrf_signature=chrf_sig,
                       decoding=f"greedy, batched by source length ({self.cfg.trainer.eval_batch_size} sentences), "
                                f"at most {a} x source tokens + {b} output tokens",
                       sentences_decoded=decoded, flops_count_time_s=round(self.decode_flops.count_time_s, 3))
        if self.decode_flops.unsupported_ops:
            details["flops_unsupported_ops"] = dict(sorted(self.decode_flops.unsupported_ops.items()))
        files = {"hypotheses.txt": lines_file(hyps), "references.txt": lines_file(data.test.references),
                 "sources.txt": lines_file(data.test.sources)}
        return Evaluation(metrics=metrics, files=files, details=details, flops=2.0 * macs,
                          flops_method=DecodeFlops.METHOD)

    def error_from_metric(self, metric_value: float) -> float:
        # Thompson et al. use WMT 2014 En-Fr error = 1 - BLEU/100.
        return 1.0 - metric_value / 100.0
