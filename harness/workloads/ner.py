"""Named-entity recognition on CoNLL-2003 English: the ``conll2003`` row of the literature.

Data: the original shared-task files (Tjong Kim Sang & De Meulder, CoNLL 2003): ``eng.train``,
``eng.testa`` (development) and ``eng.testb`` (test), one token per line as
``token POS chunk NER``, blank lines between sentences, ``-DOCSTART-`` lines between documents,
NER tags in IOB1 (``I-X`` inside any entity; ``B-X`` only where an entity directly follows
another of the same type). Training uses ``eng.train``; metrics are reported on ``eng.testb``
(and on ``eng.testa`` as the dev score); nothing is chosen on ``eng.testb``.

Tags are converted IOB1 -> IOB2 (every entity starts with ``B-``) -> BIOES (single-token
entities ``S-``, last tokens ``E-``; the scheme of Lample et al. 2016, and of Ratinov & Roth 2009
who found it better than IOB) for training. Predictions go back to IOB2, and any ill-formed sequence is repaired the way conlleval
reads it (a stray ``I-X`` starts an entity: it becomes ``B-X``), so ``seqeval`` in strict IOB2
mode and ``conlleval`` give the same score on ``predictions.conll``.

Metric: entity-level F1 (exact span and type) as conlleval computes it, via
``seqeval.metrics.f1_score(mode="strict", scheme=IOB2)``; the paper's error is 1 - F1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from harness.device import to_device
from harness.errors import DataNotFoundError, UserError
from harness.measure.batch_flops import ShapeCounts
from harness.workload import DataConfig, Evaluation, Workload, WorkloadConfig, data_root, register_workload
from harness.workloads.text import (
    UNK_ID,
    Vocab,
    length_buckets,
    token_normalizer,
    unwrap,
    pad_to_multiple,
    sorted_batches,
)

#: One sentence: its tokens and their tags.
Sentence = tuple[list[str], list[str]]

DOCSTART = "-DOCSTART-"
#: A tag in the files: O, or an IOB prefix and an entity type.
_FILE_TAG = re.compile(r"^(O|[BI]-[^\s-][^\s]*)$")


class TagScheme(str, Enum):
    """How entity tags are written for training (predictions are always written as IOB2)."""

    bioes = "bioes"
    iob2 = "iob2"


@dataclass
class NerConfig(WorkloadConfig):
    """``workload.*`` of ``workload=ner``: tagging scheme and token handling."""

    name: str = "ner"
    tag_scheme: TagScheme = TagScheme.bioes  # bioes | iob2 (Lample et al. 2016 train on IOBES)
    lowercase_words: bool = True  # word vocabulary over lowercased words; characters keep the case
    zero_digits: bool = True  # every digit -> 0 in the word vocabulary (glample/tagger's `zeros`)
    min_word_freq: int = 1  # training words seen fewer times map to <unk>
    # Each training word seen once is replaced by <unk> with this probability, per occurrence,
    # so <unk> is learned for unseen test words (Lample et al. 2016: p = 0.5, glample/tagger's
    # utils.insert_singletons).
    unk_replace_prob: float = 0.5
    max_word_len: int = 16  # characters kept per word (0.05% of CoNLL-2003 words are longer)
    pad_multiple: int = 8  # sentence and word lengths are padded to a multiple of this
    bucket_chunk_batches: int = 50  # length bucketing sorts within chunks of this many batches


@dataclass
class NerDataConfig(DataConfig):
    """``data.*`` for ``workload=ner``: a folder of CoNLL-2003-format files."""

    name: str = "conll2003"
    train_file: str = "eng.train"
    dev_file: Optional[str] = "eng.testa"  # null: no dev score
    test_file: str = "eng.testb"


# ---------------------------------------------------------------- reading
def read_conll(path: Path) -> list[Sentence]:
    """Sentences of a CoNLL-2003 file (first column the token, last column the NER tag).

    Raises:
        DataNotFoundError: the file does not exist.
        UserError: a line that is not 4 space-separated columns or whose tag is not IOB
            (the message names ``file:line``), or a file with no sentence.
    """
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found (a CoNLL-2003 file; point data.root at the folder that holds it)")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                cols = line.split()
                if not cols or cols[0] == DOCSTART:
                    if tokens:
                        sentences.append((tokens, tags))
                        tokens, tags = [], []
                    continue
                if len(cols) != 4 or not _FILE_TAG.match(cols[3]):
                    why = (f"expected 4 columns (token POS chunk NER), found {len(cols)}" if len(cols) != 4
                           else f"NER tag {cols[3]!r} is not O, B-TYPE or I-TYPE")
                    raise UserError(f"{path}:{lineno}: malformed CoNLL-2003 line {line.strip()[:80]!r}: {why}")
                tokens.append(cols[0])
                tags.append(cols[3])
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a line)") from None
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise UserError(f"{path}: no sentences (an empty or blank CoNLL-2003 file)")
    return sentences


# ---------------------------------------------------------------- tagging schemes
def _split(tag: str) -> tuple[str, str]:
    return (tag, "") if tag == "O" else (tag[0], tag[2:])


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (``I-X`` starts an entity unless it continues one of type X) -> IOB2 (``B-X`` starts every entity)."""
    out: list[str] = []
    prev_type = ""
    for tag in tags:
        prefix, kind = _split(tag)
        if prefix == "I" and prev_type != kind:
            tag = f"B-{kind}"
        out.append(tag)
        prev_type = kind
    return out


def repair_iob2(tags: Sequence[str]) -> list[str]:
    """Valid IOB2 from any B/I/E/S/O sequence, read the way conlleval reads it.

    ``E-``/``S-`` become ``I-``/``B-``; an ``I-X`` that does not continue an entity of type X
    (after ``O`` or another type) starts one: it becomes ``B-X``.
    """
    out: list[str] = []
    prev_type = ""
    for tag in tags:
        prefix, kind = _split(tag)
        if prefix == "O":
            out.append("O")
            prev_type = ""
            continue
        starts = prefix in ("B", "S") or prev_type != kind
        out.append(f"{'B' if starts else 'I'}-{kind}")
        prev_type = kind
    return out


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB2 -> BIOES: the last token of an entity is ``E-`` (``S-`` when it is also the first)."""
    out: list[str] = []
    for i, tag in enumerate(tags):
        prefix, kind = _split(tag)
        if prefix == "O":
            out.append("O")
            continue
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        continues = nxt == f"I-{kind}"
        if prefix == "B":
            out.append(f"{'B' if continues else 'S'}-{kind}")
        else:
            out.append(f"{'I' if continues else 'E'}-{kind}")
    return out


def bioes_to_iob2(tags: Sequence[str]) -> list[str]:
    """BIOES (possibly ill-formed, as a model predicts it) -> valid IOB2 (see :func:`repair_iob2`)."""
    return repair_iob2(tags)


def tag_set(entity_types: Sequence[str], scheme: TagScheme) -> list[str]:
    """Every tag of ``scheme`` for these entity types: O first, then by type and prefix."""
    prefixes = "BIES" if TagScheme(scheme) is TagScheme.bioes else "BI"
    return ["O", *(f"{p}-{kind}" for kind in sorted(entity_types) for p in prefixes)]


# ---------------------------------------------------------------- metric and predictions file
def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (exact span and type) with seqeval's strict IOB2 mode,
    which equals conlleval on valid IOB2 sequences."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold, pred = [list(s) for s in gold], [list(s) for s in pred]
    kwargs = dict(mode="strict", scheme=IOB2, zero_division=0)
    return {
        "f1": float(f1_score(gold, pred, **kwargs)),
        "precision": float(precision_score(gold, pred, **kwargs)),
        "recall": float(recall_score(gold, pred, **kwargs)),
    }


def format_conll(tokens: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> str:
    """The conlleval layout: ``token gold predicted`` per line, a blank line after each sentence."""
    lines: list[str] = []
    for words, golds, preds in zip(tokens, gold, pred):
        lines.extend(f"{w} {g} {p}" for w, g, p in zip(words, golds, preds))
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")


def parse_conll_predictions(text: str) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag sequences of a ``predictions.conll`` text (for re-scoring)."""
    gold: list[list[str]] = [[]]
    pred: list[list[str]] = [[]]
    for line in text.splitlines():
        cols = line.split()
        if not cols:
            if gold[-1]:
                gold.append([])
                pred.append([])
            continue
        gold[-1].append(cols[-2])
        pred[-1].append(cols[-1])
    if not gold[-1]:
        gold.pop()
        pred.pop()
    return gold, pred


# ---------------------------------------------------------------- data
@dataclass
class NerBatch:
    """A padded batch of sentences: (B, T) words, tags and mask, (B, T, L) characters."""

    words: torch.Tensor
    chars: torch.Tensor
    mask: torch.Tensor
    tags: torch.Tensor
    num_sentences: int
    num_tokens: int  # real (unpadded) tokens
    index: list[int]  # the sentences' positions in their split


class NerSplit:
    """One file's sentences, encoded once: word ids, character ids (``max_word_len`` per word), tags."""

    def __init__(self, sentences: list[Sentence], words: Vocab, chars: Vocab, normalize, max_word_len: int,
                 tag_ids: Optional[dict[str, int]], scheme: TagScheme) -> None:
        self.tokens = [s[0] for s in sentences]
        self.gold_iob2 = [iob1_to_iob2(s[1]) for s in sentences]
        self.lengths = [len(t) for t in self.tokens]
        self.word_ids = [torch.tensor(words.ids(normalize(w) for w in toks), dtype=torch.long) for toks in self.tokens]
        # Characters of each distinct word, padded to max_word_len, computed once per word.
        spelled: dict[str, list[int]] = {}
        for toks in self.tokens:
            for w in toks:
                if w not in spelled:
                    ids = chars.ids(w[:max_word_len])
                    spelled[w] = ids + [0] * (max_word_len - len(ids))
        self.char_ids = [torch.tensor([spelled[w] for w in toks], dtype=torch.long) for toks in self.tokens]
        self.word_lens = [min(max(len(w) for w in toks), max_word_len) for toks in self.tokens]  # longest word, capped
        self.tag_ids: Optional[list[torch.Tensor]] = None
        if tag_ids is not None:
            convert = iob2_to_bioes if TagScheme(scheme) is TagScheme.bioes else list
            self.tag_ids = [torch.tensor([tag_ids[t] for t in convert(g)], dtype=torch.long) for g in self.gold_iob2]

    def __len__(self) -> int:
        return len(self.tokens)


class NerData:
    """CoNLL-2003 train/dev/test, the vocabularies (from the training split) and the batching."""

    def __init__(self, cfg: Any, device: torch.device) -> None:
        wcfg, dcfg = cfg.workload, cfg.data
        self.device = device
        self.name = str(dcfg.name)
        root = data_root(dcfg, f"a folder holding the CoNLL-2003 files {dcfg.train_file}, {dcfg.dev_file}, "
                               f"{dcfg.test_file}")
        self.source = str(root.resolve())
        for key, value in (("data.train_subset", dcfg.train_subset), ("data.eval_subset", dcfg.eval_subset)):
            if value is not None and value < 1:
                raise UserError(f"{key}={value} is invalid: it must be >= 1 or null (all)")
        if wcfg.max_word_len < 1 or wcfg.pad_multiple < 1 or wcfg.min_word_freq < 1 or wcfg.bucket_chunk_batches < 1:
            raise UserError("workload.max_word_len, pad_multiple, min_word_freq and bucket_chunk_batches must be >= 1 "
                            f"(got {wcfg.max_word_len}, {wcfg.pad_multiple}, {wcfg.min_word_freq}, {wcfg.bucket_chunk_batches})")
        if not 0.0 <= wcfg.unk_replace_prob <= 1.0:
            raise UserError(f"workload.unk_replace_prob={wcfg.unk_replace_prob} is invalid: it must be in [0, 1]")
        self.scheme = TagScheme(wcfg.tag_scheme)
        self.max_word_len = int(wcfg.max_word_len)
        self.pad_multiple = int(wcfg.pad_multiple)
        self.chunk_batches = int(wcfg.bucket_chunk_batches)
        self.unk_replace_prob = float(wcfg.unk_replace_prob)

        train = read_conll(root / dcfg.train_file)[: dcfg.train_subset]
        test = read_conll(root / dcfg.test_file)[: dcfg.eval_subset]
        dev = read_conll(root / dcfg.dev_file)[: dcfg.eval_subset] if dcfg.dev_file else None

        normalize = token_normalizer(bool(wcfg.lowercase_words), bool(wcfg.zero_digits))  # plain values: no OmegaConf lookups per token
        self.words = Vocab.build((normalize(w) for toks, _ in train for w in toks), min_freq=wcfg.min_word_freq)
        self.chars = Vocab.build(c for toks, _ in train for w in toks for c in w)
        types = sorted({_split(t)[1] for _, tags in train for t in tags if t != "O"})
        self.tags = tag_set(types, self.scheme)
        tag_ids = {t: i for i, t in enumerate(self.tags)}
        self.singleton = torch.zeros(len(self.words), dtype=torch.bool)
        self.singleton[self.words.singleton_ids()] = True

        self.train = NerSplit(train, self.words, self.chars, normalize, self.max_word_len, tag_ids, self.scheme)
        self.test = NerSplit(test, self.words, self.chars, normalize, self.max_word_len, None, self.scheme)
        self.dev = NerSplit(dev, self.words, self.chars, normalize, self.max_word_len, None, self.scheme) if dev else None
        self.num_train = len(self.train)
        self.num_eval = len(self.test)
        splits = {"train": (dcfg.train_file, self.train), "test": (dcfg.test_file, self.test)}
        if self.dev is not None:
            splits["dev"] = (dcfg.dev_file, self.dev)
        long_words = sum(len(w) > self.max_word_len for toks in self.train.tokens for w in toks)
        self.details: dict[str, Any] = {
            "split": {"rule": "the CoNLL-2003 files: train on train, report test, dev as the dev score",
                      **{k: {"file": str(f), "sentences": len(sp), "tokens": sum(sp.lengths)} for k, (f, sp) in splits.items()}},
            "word_vocab_size": len(self.words),
            "char_vocab_size": len(self.chars),
            "tags": list(self.tags),
            "test_unknown_words": sum(int((ids == UNK_ID).sum()) for ids in self.test.word_ids),
            "train_words_truncated": long_words,  # longer than workload.max_word_len characters
        }

    def make_batch(self, split: NerSplit, index: list[int], rng: Optional[torch.Generator] = None) -> NerBatch:
        """Pad the sentences ``index`` of ``split`` to (B, T, L), T and L multiples of ``pad_multiple``
        (L capped at ``max_word_len``); with ``rng``, replace singletons by <unk> (training)."""
        lengths = [split.lengths[i] for i in index]
        t_len = pad_to_multiple(max(lengths), self.pad_multiple)
        c_len = pad_to_multiple(max(split.word_lens[i] for i in index), self.pad_multiple, cap=self.max_word_len)
        b = len(index)
        words = torch.zeros(b, t_len, dtype=torch.long)
        chars = torch.zeros(b, t_len, c_len, dtype=torch.long)
        tags = torch.zeros(b, t_len, dtype=torch.long)
        for row, i in enumerate(index):
            n = lengths[row]
            words[row, :n] = split.word_ids[i]
            chars[row, :n] = split.char_ids[i][:, :c_len]
            if split.tag_ids is not None:
                tags[row, :n] = split.tag_ids[i]
        mask = torch.arange(t_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        if rng is not None and self.unk_replace_prob > 0:
            drop = self.singleton[words] & (torch.rand(words.shape, generator=rng) < self.unk_replace_prob)
            words = words.masked_fill(drop, UNK_ID)
        to = lambda x: to_device(x, self.device)  # noqa: E731
        return NerBatch(to(words), to(chars), to(mask), to(tags), b, sum(lengths), list(index))

    def train_batches(self, batch_size: int, rng: torch.Generator) -> Iterator[NerBatch]:
        """One epoch: length-bucketed batches of ``batch_size`` sentences in an order drawn from ``rng``
        (the last ragged batch is dropped)."""
        if batch_size > self.num_train:
            raise UserError(f"trainer.batch_size={batch_size} is larger than the {self.num_train} training sentences")
        for index in length_buckets(self.train.lengths, batch_size, rng, self.chunk_batches, drop_last=True):
            yield self.make_batch(self.train, index, rng)

    def eval_batches(self, split: NerSplit, batch_size: int) -> Iterator[NerBatch]:
        for index in sorted_batches(split.lengths, batch_size):
            yield self.make_batch(split, index)


# ---------------------------------------------------------------- the workload
def _crf(model: nn.Module) -> nn.Module:
    """The model's CRF (``crf`` submodule: ``nll`` and ``decode``), through any wrapper."""
    return unwrap(model, "crf", "a tagger with a CRF").crf


@register_workload
class NamedEntityRecognition(Workload):
    """CoNLL-2003 English NER: train on eng.train, entity F1 on eng.testb (eng.testa as dev)."""

    name = "ner"
    benchmark = "conll2003"
    metric_name = "entity_f1"
    prediction_files = ("predictions.conll",)
    config_class = NerConfig
    data_config_class = NerDataConfig

    def build_data(self) -> NerData:
        return NerData(self.cfg, self.device)

    def build_model(self, data: NerData) -> nn.Module:
        return self.registered_model(vocab_size=len(data.words), num_chars=len(data.chars), num_tags=len(data.tags))

    def model_inputs(self, batch: NerBatch) -> tuple:
        return batch.words, batch.chars, batch.mask

    def batch_size_of(self, batch: NerBatch) -> int:
        return batch.num_sentences

    def positions_of(self, batch: NerBatch) -> tuple[int, int]:
        return batch.num_tokens, batch.num_sentences * int(batch.words.shape[1])

    def loss(self, model: nn.Module, batch: NerBatch) -> tuple[torch.Tensor, int]:
        """Sum of the per-sentence CRF negative log-likelihoods, and the number of sentences."""
        emissions = model(*self.model_inputs(batch))
        nll = _crf(model).nll(emissions.float(), batch.tags, batch.mask)
        return nll.sum(), batch.num_sentences

    #: how :meth:`evaluate` counts its FLOPs (result.json ``eval_flops_method``)
    EVAL_FLOPS_METHOD = ("forward passes as run: fvcore (harness.measure.flops.count_forward_macs, 2 FLOPs per "
                         "multiply-add) of every padded evaluation batch of the test and dev sets, counted once per "
                         "shape; Viterbi decoding (T x B x tags^2 additions) not counted")

    def __init__(self, cfg: Any, device: torch.device) -> None:
        super().__init__(cfg, device)
        self._eval_flops = ShapeCounts()  # forward multiply-adds of one eval batch, by shape

    def _batch_macs(self, model: nn.Module, batch: NerBatch) -> float:
        return self._eval_flops.macs_of(model, self.shape_key(batch), self.model_inputs(batch))

    @torch.no_grad()
    def predict(self, model: nn.Module, data: NerData, split: NerSplit) -> tuple[list[list[str]], float, int]:
        """Viterbi tags of every sentence of ``split`` as valid IOB2 in the split's order, the forward
        multiply-adds spent, and how many predicted tags the IOB2 repair changed."""
        crf = _crf(model)
        count_flops = self.counts_flops()
        out: list[list[str]] = [[] for _ in range(len(split))]
        macs, repaired = 0.0, 0
        for batch in data.eval_batches(split, int(self.cfg.trainer.eval_batch_size)):
            emissions = model(*self.model_inputs(batch))
            best = crf.decode(emissions.float(), batch.mask).cpu().tolist()
            for row, i in enumerate(batch.index):
                raw = [data.tags[k] for k in best[row][: split.lengths[i]]]
                out[i] = bioes_to_iob2(raw)
                if data.scheme is TagScheme.bioes:
                    raw = [{"E": "I", "S": "B"}.get(t[0], t[0]) + t[1:] for t in raw]
                repaired += sum(a != b for a, b in zip(raw, out[i]))
            if count_flops:
                macs += self._batch_macs(model, batch)
        return out, macs, repaired

    def evaluate(self, model: nn.Module, data: NerData) -> Evaluation:
        from importlib.metadata import version

        pred, macs, repaired = self.predict(model, data, data.test)
        scores = entity_scores(data.test.gold_iob2, pred)
        metrics = {self.metric_name: scores["f1"], "precision": scores["precision"], "recall": scores["recall"]}
        if data.dev is not None:
            dev_pred, dev_macs, _ = self.predict(model, data, data.dev)
            dev = entity_scores(data.dev.gold_iob2, dev_pred)
            metrics.update(dev_entity_f1=dev["f1"], dev_precision=dev["precision"], dev_recall=dev["recall"])
            macs += dev_macs
        details: dict[str, Any] = {
            "scorer": f"seqeval {version('seqeval')}: f1_score(mode='strict', scheme=IOB2), entity-level exact span "
                      "and type (= conlleval on valid IOB2)",
            "test_set": str(self.cfg.data.test_file), "dev_set": self.cfg.data.dev_file,
            "decoding": getattr(_crf(model), "decoding", type(_crf(model)).__name__),
            "repaired_tags": repaired,  # predicted test tags changed to make valid IOB2 (a stray I- starts an entity)
        }
        if self._eval_flops.unsupported_ops:
            details["flops_unsupported_ops"] = dict(sorted(self._eval_flops.unsupported_ops.items()))
        counted = self.counts_flops()
        return Evaluation(metrics=metrics, details=details,
                          files={self.prediction_files[0]: format_conll(data.test.tokens, data.test.gold_iob2, pred)},
                          flops=2.0 * macs if counted else None, flops_method=self.EVAL_FLOPS_METHOD if counted else None)

    def error_from_metric(self, metric_value: float) -> float:
        # Thompson et al. use CoNLL-2003 error = 1 - entity F1.
        return 1.0 - metric_value
