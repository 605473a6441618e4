"""Extractive question answering: the ``squad1.1`` row of the literature.

Data (``data.format``), read and cut into windows by :mod:`harness.workloads.qa_data`:

- ``squad``: SQuAD v1.1 (or v2.0) JSON files under ``data.root`` (``train-v1.1.json``,
  ``dev-v1.1.json``, or any file in that format); v2.0's unanswerable questions are skipped and counted.
- ``conll2003`` (the default, a proxy): span-QA generated from the CoNLL-2003 news documents, written
  as SQuAD v1.1 JSON into ``workload.cache_dir`` and read back by the same reader.

Word pieces: a BERT-style WordPiece vocabulary trained on the training split's questions and
contexts with ``tokenizers`` (cached by a hash of its text and settings), or a given ``vocab.txt``
(``workload.vocab_file``) for pretrained weights. No hub downloads.

Model: :mod:`models.bert_qa` (BERT-base at ``scale=1.0``). Loss: BERT's, the mean of the start and
end cross-entropies over each window's real tokens, with the log of the summed probability of every
gold position when an answer occurs more than once in the window (Clark & Gardner, "Simple and
Effective Multi-Paragraph Reading Comprehension", ACL 2018, sec. 3.3 use this summed objective); a
window without the answer targets ``[CLS]``, as ``run_squad.py`` does for SQuAD 1.1.

Prediction: in every window the span with the highest start + end logit among context tokens, start
in its max-context window, at most ``max_answer_tokens`` long (``run_squad.py``'s constraints; it
searches the 20 best starts x 20 best ends, here every pair), then the best over the example's
windows; the answer is the context's characters under the span (never empty: SQuAD 1.1 has no
unanswerable questions).

Metric: the official SQuAD v1.1 evaluation (``evaluate-v1.1.py``, reproduced in :func:`squad_evaluate`):
answers and predictions normalised (lower case, punctuation and the articles a/an/the removed,
whitespace collapsed), exact match and token F1 each the max over the gold answers, averaged over
every question. Reported as fractions (the script prints percentages); F1 is primary and the paper's
error is 1 - F1. The run folder holds ``predictions.json`` (``{question id: answer text}``) and
``eval-v1.1.json`` (the scored questions in SQuAD v1.1 format), so ``python evaluate-v1.1.py
eval-v1.1.json predictions.json`` re-scores it. Beside it: the trivial baseline of answering every
question with the first entity mention of its context, where the data names its entities (the
generated proxy does; real SQuAD does not, so the baseline is null there).
"""
from __future__ import annotations

import json
import re
import string
import sys
import time
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from harness.device import to_device
from harness.errors import DataNotFoundError, UserError
from harness.measure.batch_flops import ShapeCounts
from harness.workload import DataConfig, Evaluation, Workload, WorkloadConfig, data_root, register_workload
from harness.workloads.qa_data import (
    PAD,
    QaExample,
    Window,
    cached_cloze,
    cached_wordpiece,
    load_vocab_file,
    make_windows,
    read_squad,
    squad_json,
)
from harness.workloads.text import length_buckets, pad_2d, pad_to_multiple, sorted_batches


class QaFormat(str, Enum):
    """What ``data.root`` holds."""

    squad = "squad"  # SQuAD v1.1/v2.0 JSON files
    conll2003 = "conll2003"  # CoNLL-2003 files: span QA is generated from them (a proxy)


@dataclass
class QaConfig(WorkloadConfig):
    """``workload.*`` of ``workload=qa``: word pieces, windows, answers."""

    name: str = "qa"
    vocab_size: int = 8000  # WordPiece vocabulary trained on the training split, specials included
    lowercase: bool = False  # BertNormalizer lowercasing (cased keeps the capitals that mark names)
    vocab_file: Optional[str] = None  # a pretrained BERT's vocab.txt instead of training one
    # generated data and trained tokenizers are kept here by a hash of their inputs; null = no cache
    cache_dir: Optional[str] = "results/cache/qa"
    max_seq_len: int = 384  # run_squad.py's max_seq_length
    doc_stride: int = 128  # run_squad.py's doc_stride
    max_question_tokens: int = 64  # run_squad.py's max_query_length
    max_answer_tokens: int = 30  # run_squad.py's max_answer_length
    pad_multiple: int = 8  # sequences are padded to a multiple of this
    bucket_chunk_batches: int = 50  # length bucketing sorts within chunks of this many batches
    eval_dev: bool = False  # also read and score the dev split (dev_f1, dev_exact_match)


@dataclass
class QaDataConfig(DataConfig):
    """``data.*`` for ``workload=qa``."""

    name: str = "conll2003_qa"
    format: QaFormat = QaFormat.conll2003
    train_file: str = "eng.train"
    dev_file: Optional[str] = "eng.testa"  # null: no dev split
    test_file: str = "eng.testb"
    context_words: int = 40  # format=conll2003: words of the sentences around the question per context
    # format=conll2003: the question's own sentence stays in the context (Lewis et al. 2019's cloze
    # questions: the answer is found by matching the question to it); false: only other mentions answer
    keep_question_sentence: bool = True


# ---------------------------------------------------------------- the official SQuAD v1.1 metric
# A faithful copy of the logic of the official evaluate-v1.1.py (Rajpurkar et al. 2016,
# https://rajpurkar.github.io/SQuAD-explorer/, "Evaluation Script v1.1").
def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn: Callable[[str, str], float], prediction: str,
                                  ground_truths: Sequence[str]) -> float:
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def squad_evaluate(dataset: Sequence[dict], predictions: dict[str, str]) -> dict[str, float]:
    """``evaluate(dataset, predictions)`` of evaluate-v1.1.py: {'exact_match', 'f1'} in percent; an
    unanswered question scores 0 (the script prints a message for it, here to stderr too)."""
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    print("Unanswered question " + qa["id"] + " will receive score 0.", file=sys.stderr)
                    continue
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def rescore_files(eval_file: Path, predictions_file: Path) -> dict[str, float]:
    """Re-score a run folder's files as the official script does (percentages)."""
    dataset = json.loads(eval_file.read_text(encoding="utf-8"))["data"]
    return squad_evaluate(dataset, json.loads(predictions_file.read_text(encoding="utf-8")))


# ---------------------------------------------------------------- data
@dataclass
class QaBatch:
    """Padded windows: (B, T) ids and segment ids, (B, T) gold start/end masks (training)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    start_gold: Optional[torch.Tensor]
    end_gold: Optional[torch.Tensor]
    num_windows: int
    num_tokens: int  # real (unpadded) tokens
    index: list[int]  # the windows' positions in their split


class QaSplit:
    """One split's examples and windows."""

    def __init__(self, examples: list[QaExample], windows: list[Window]) -> None:
        self.examples, self.windows = examples, windows
        self.lengths = [len(w.input_ids) for w in windows]

    def __len__(self) -> int:
        return len(self.examples)


class QaData:
    """Train/dev/test questions, the word pieces (from the training split) and the windows."""

    def __init__(self, cfg: Any, device: torch.device) -> None:
        wcfg, dcfg = cfg.workload, cfg.data
        self.device = device
        self.name = str(dcfg.name)
        self._check(wcfg, dcfg)
        self.pad_multiple = int(wcfg.pad_multiple)
        self.chunk_batches = int(wcfg.bucket_chunk_batches)
        root = data_root(dcfg, f"a folder holding {dcfg.train_file} and {dcfg.test_file} (SQuAD JSON for "
                               "data.format=squad, the CoNLL-2003 files for data.format=conll2003)")
        self.source = str(root.resolve())
        cache_dir = None if wcfg.cache_dir is None else Path(str(wcfg.cache_dir)).expanduser()
        fmt = QaFormat(dcfg.format)
        details: dict[str, Any] = {"format": fmt.value}
        files = {"train": dcfg.train_file, "test": dcfg.test_file}
        if dcfg.dev_file and wcfg.eval_dev:  # read only when scored
            files["dev"] = dcfg.dev_file
        splits: dict[str, list[QaExample]] = {}
        for split, file in files.items():
            path = root / str(file)
            if fmt is QaFormat.conll2003:
                examples, counts, generated, cache, hit = cached_cloze(path, split, int(dcfg.context_words), cache_dir,
                                                                       bool(dcfg.keep_question_sentence))
                details[split] = {"file": str(file), "generated": generated.as_dict(), "read": counts.as_dict(),
                                  "cache_file": None if cache is None else str(cache), "cache_hit": hit}
            else:
                examples, counts = read_squad(path)
                details[split] = {"file": str(file), "read": counts.as_dict()}
            limit = dcfg.train_subset if split == "train" else dcfg.eval_subset
            splits[split] = examples[:limit] if limit is not None else examples
            details[split]["questions"] = len(splits[split])
            if not splits[split] and split != "dev":
                raise UserError(f"{path}: no answerable question (nothing to {'train' if split == 'train' else 'score'})")
        if fmt is QaFormat.conll2003:
            own = "with" if dcfg.keep_question_sentence else "without"
            details["generator"] = (f"cloze questions from CoNLL-2003 documents: a sentence with every mention of one "
                                    f"entity replaced by a question word for its type, the context the sentences "
                                    f"around it ({own} its own; <= {dcfg.context_words} words), the answers that "
                                    "entity's mentions there (harness/workloads/qa_data.py)")

        started = time.perf_counter()
        if wcfg.vocab_file:
            self.tokenizer, cache_file, hit = load_vocab_file(Path(str(wcfg.vocab_file)).expanduser(),
                                                              bool(wcfg.lowercase)), None, False
        else:
            train = splits["train"]
            texts = sorted({ex.context for ex in train}) + [ex.question for ex in train]
            self.tokenizer, cache_file, hit = cached_wordpiece(texts, int(wcfg.vocab_size), bool(wcfg.lowercase),
                                                               cache_dir)
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.pad_id = self.tokenizer.token_to_id(PAD)
        details["wordpiece"] = dict(library="tokenizers", vocab_size=self.vocab_size, lowercase=bool(wcfg.lowercase),
                                    vocab_file=wcfg.vocab_file, trained_on=None if wcfg.vocab_file else
                                    "training split: its distinct contexts and its questions",
                                    cache_file=None if cache_file is None else str(cache_file), cache_hit=hit,
                                    seconds=round(time.perf_counter() - started, 3))

        win = dict(tokenizer=self.tokenizer, max_seq_len=int(wcfg.max_seq_len), doc_stride=int(wcfg.doc_stride),
                   max_question_tokens=int(wcfg.max_question_tokens))
        self.train = QaSplit(splits["train"], make_windows(splits["train"], with_targets=True, **win))
        self.test = QaSplit(splits["test"], make_windows(splits["test"], with_targets=False, **win))
        self.dev = (QaSplit(splits["dev"], make_windows(splits["dev"], with_targets=False, **win))
                    if splits.get("dev") else None)
        self.num_train = len(self.train.windows)  # a training sample is one window
        self.num_eval = len(self.test)  # an evaluation sample is one question
        answered = sum(w.starts != [0] for w in self.train.windows)
        details.update(train_questions=len(self.train), train_windows=self.num_train,
                       train_windows_with_answer=answered, test_questions=len(self.test),
                       test_windows=len(self.test.windows),
                       dev_questions=len(self.dev) if self.dev else 0,
                       padding_multiple=self.pad_multiple)
        self.details = details

    @staticmethod
    def _check(wcfg: Any, dcfg: Any) -> None:
        for key, value, low in (("workload.vocab_size", wcfg.vocab_size, 10), ("workload.max_seq_len", wcfg.max_seq_len, 8),
                                ("workload.doc_stride", wcfg.doc_stride, 1),
                                ("workload.max_question_tokens", wcfg.max_question_tokens, 1),
                                ("workload.max_answer_tokens", wcfg.max_answer_tokens, 1),
                                ("workload.pad_multiple", wcfg.pad_multiple, 1),
                                ("workload.bucket_chunk_batches", wcfg.bucket_chunk_batches, 1),
                                ("data.context_words", dcfg.context_words, 1)):
            if value < low:
                raise UserError(f"{key}={value} is invalid: it must be >= {low}")
        for key, value in (("data.train_subset", dcfg.train_subset), ("data.eval_subset", dcfg.eval_subset)):
            if value is not None and value < 1:
                raise UserError(f"{key}={value} is invalid: it must be >= 1 or null (all)")

    def make_batch(self, split: QaSplit, index: Sequence[int], targets: bool) -> QaBatch:
        """Windows ``index`` of ``split`` padded to a multiple of ``pad_multiple``; with ``targets``,
        the gold start and end masks."""
        rows = [split.windows[i] for i in index]
        t_len = pad_to_multiple(max(len(w.input_ids) for w in rows), self.pad_multiple)
        ids = pad_2d([w.input_ids for w in rows], t_len, pad=self.pad_id)
        types = torch.zeros_like(ids)
        for r, w in enumerate(rows):
            types[r, w.ctx_start : len(w.input_ids)] = 1
        start = end = None
        if targets:
            start = torch.zeros(len(rows), t_len, dtype=torch.bool)
            end = torch.zeros(len(rows), t_len, dtype=torch.bool)
            for r, w in enumerate(rows):
                start[r, w.starts] = True
                end[r, w.ends] = True
        to = lambda x: to_device(x, self.device)  # noqa: E731
        return QaBatch(to(ids), to(types), to(start), to(end), len(rows), sum(len(w.input_ids) for w in rows),
                       list(index))

    def train_batches(self, batch_size: int, rng: torch.Generator) -> Iterator[QaBatch]:
        """One epoch of ``batch_size``-window batches of similar lengths in an order drawn from ``rng``
        (the ragged remainder dropped)."""
        if batch_size > self.num_train:
            raise UserError(f"trainer.batch_size={batch_size} is larger than the {self.num_train} training windows")
        for index in length_buckets(self.train.lengths, batch_size, rng, self.chunk_batches, drop_last=True):
            yield self.make_batch(self.train, index, targets=True)

    def eval_batches(self, split: QaSplit, batch_size: int) -> Iterator[QaBatch]:
        for index in sorted_batches(split.lengths, batch_size):
            yield self.make_batch(split, index, targets=False)


# ---------------------------------------------------------------- spans
def best_spans(logits: torch.Tensor, windows: Sequence[Window], max_answer_tokens: int) -> list[tuple[float, int, int]]:
    """(score, first, last) context-token span of each window with the highest start + end logit:
    start a context token in its max-context window, end a context token, 0 <= last - first <
    ``max_answer_tokens``."""
    b, t, _ = logits.shape
    start_ok = torch.zeros(b, t, dtype=torch.bool)
    end_ok = torch.zeros(b, t, dtype=torch.bool)
    for r, w in enumerate(windows):
        n = len(w.offsets)
        end_ok[r, w.ctx_start : w.ctx_start + n] = True
        start_ok[r, w.ctx_start : w.ctx_start + n] = torch.tensor(w.max_context, dtype=torch.bool)
    logits = logits.float().cpu()
    pos = torch.arange(t)
    band = (pos[None, :] >= pos[:, None]) & (pos[None, :] - pos[:, None] < max_answer_tokens)  # (start, end)
    scores = logits[:, :, 0, None] + logits[:, None, :, 1]
    valid = band[None] & start_ok[:, :, None] & end_ok[:, None, :]
    scores = scores.masked_fill(~valid, float("-inf")).flatten(1)
    best, arg = scores.max(dim=1)
    out = []
    for r, w in enumerate(windows):
        first, last = divmod(int(arg[r]), t)
        out.append((float(best[r]), first - w.ctx_start, last - w.ctx_start))
    return out


# ---------------------------------------------------------------- the workload
@register_workload
class QuestionAnswering(Workload):
    """Extractive QA: train on the training split, official SQuAD v1.1 F1 and EM on the test split."""

    name = "qa"
    benchmark = "squad1.1"
    metric_name = "f1"
    prediction_files = ("predictions.json", "eval-v1.1.json")
    config_class = QaConfig
    data_config_class = QaDataConfig

    #: how :meth:`evaluate` counts its FLOPs (result.json ``eval_flops_method``)
    EVAL_FLOPS_METHOD = ("forward passes as run: fvcore (harness.measure.flops.count_forward_macs, 2 FLOPs per "
                         "multiply-add) of every padded evaluation batch of windows, counted once per shape; the "
                         "span search (start + end logit over the valid pairs) not counted")

    def __init__(self, cfg: Any, device: torch.device) -> None:
        super().__init__(cfg, device)
        self._eval_flops = ShapeCounts()  # forward multiply-adds of one eval batch, by shape
        self._pad_id = 0  # the word-piece vocabulary's [PAD], set by build_data

    def build_data(self) -> QaData:
        data = QaData(self.cfg, self.device)
        self._pad_id = data.pad_id
        return data

    def build_model(self, data: QaData) -> nn.Module:
        model = self.registered_model(vocab_size=data.vocab_size, pad_id=data.pad_id)
        longest = max(data.train.lengths + data.test.lengths, default=0)
        limit = getattr(model, "max_positions", None)
        if limit is not None and pad_to_multiple(longest, data.pad_multiple) > limit:
            raise UserError(f"workload.max_seq_len={self.cfg.workload.max_seq_len} (padded to {data.pad_multiple}) is "
                            f"longer than the model's {limit} positions (model.max_positions)")
        return model

    def model_inputs(self, batch: QaBatch) -> tuple:
        return batch.input_ids, batch.token_type_ids

    def batch_size_of(self, batch: QaBatch) -> int:
        return batch.num_windows

    def positions_of(self, batch: QaBatch) -> tuple[int, int]:
        return batch.num_tokens, batch.num_windows * int(batch.input_ids.shape[1])

    def loss(self, model: nn.Module, batch: QaBatch) -> tuple[torch.Tensor, int]:
        """Sum over windows of (start + end) / 2 negative log-likelihoods over the real tokens, each the
        log of the summed probability of the gold positions; and the number of windows."""
        logits = model(*self.model_inputs(batch)).float()
        real = batch.input_ids != self._pad_id
        total = logits.new_zeros(())
        for k, gold in ((0, batch.start_gold), (1, batch.end_gold)):
            x = logits[..., k].masked_fill(~real, float("-inf"))
            total = total + (torch.logsumexp(x, dim=1) - torch.logsumexp(x.masked_fill(~gold, float("-inf")), dim=1)).sum()
        return total / 2, batch.num_windows

    def _batch_macs(self, model: nn.Module, batch: QaBatch) -> float:
        return self._eval_flops.macs_of(model, self.shape_key(batch), self.model_inputs(batch))

    @torch.no_grad()
    def predict(self, model: nn.Module, data: QaData, split: QaSplit) -> tuple[dict[str, str], float]:
        """{question id: answer text} of every question of ``split``, and the forward multiply-adds spent."""
        max_len = int(self.cfg.workload.max_answer_tokens)
        best: dict[int, tuple[float, int, int, int]] = {}  # example -> (score, window, first, last)
        macs = 0.0
        count = self.counts_flops()
        for batch in data.eval_batches(split, int(self.cfg.trainer.eval_batch_size)):
            logits = model(*self.model_inputs(batch))
            windows = [split.windows[i] for i in batch.index]
            for i, w, (score, first, last) in zip(batch.index, windows, best_spans(logits, windows, max_len)):
                if w.example not in best or score > best[w.example][0]:
                    best[w.example] = (score, i, first, last)
            if count:
                macs += self._batch_macs(model, batch)
        out: dict[str, str] = {}
        for n, ex in enumerate(split.examples):
            _, i, first, last = best[n]
            offsets = split.windows[i].offsets
            out[ex.qid] = ex.context[offsets[first][0] : offsets[last][1]]
        return out, macs

    def score(self, model: nn.Module, data: QaData, split: QaSplit) -> tuple[dict[str, float], dict[str, str], dict, float]:
        """(metrics as fractions, predictions, the scored SQuAD v1.1 object, multiply-adds)."""
        predictions, macs = self.predict(model, data, split)
        dataset = squad_json(split.examples)
        official = squad_evaluate(dataset["data"], predictions)
        metrics = {"f1": official["f1"] / 100.0, "exact_match": official["exact_match"] / 100.0}
        if all(ex.entities is not None for ex in split.examples):
            first = {ex.qid: ex.entities[0][0] if ex.entities else "" for ex in split.examples}
            baseline = squad_evaluate(dataset["data"], first)
            metrics.update(first_entity_f1=baseline["f1"] / 100.0, first_entity_exact_match=baseline["exact_match"] / 100.0)
        return metrics, predictions, dataset, macs

    def evaluate(self, model: nn.Module, data: QaData) -> Evaluation:
        metrics, predictions, dataset, macs = self.score(model, data, data.test)
        if self.cfg.workload.eval_dev and data.dev is not None:
            dev, _, _, dev_macs = self.score(model, data, data.dev)
            metrics.update({f"dev_{k}": v for k, v in dev.items()})
            macs += dev_macs
        has_baseline = "first_entity_f1" in metrics
        details: dict[str, Any] = {
            "scorer": "official SQuAD v1.1 evaluation logic (evaluate-v1.1.py: normalize_answer, exact match, token "
                      "F1, max over gold answers), as fractions; the script prints percentages",
            "test_file": str(self.cfg.data.test_file),
            "questions_scored": len(data.test),
            "unanswerable_skipped": data.details["test"]["read"]["unanswerable_skipped"],
            "baseline": ("first_entity: every question answered with the first entity mention of its context "
                         "(the data's gold entity spans)") if has_baseline else
                        "first_entity: null, the data names no entities (real SQuAD)",
            "first_entity_f1": metrics.get("first_entity_f1"),
            "first_entity_exact_match": metrics.get("first_entity_exact_match"),
            "decoding": f"best start + end logit over context tokens, start in its max-context window, at most "
                        f"{self.cfg.workload.max_answer_tokens} tokens, best over an example's windows",
            "rescore": "python evaluate-v1.1.py eval-v1.1.json predictions.json",
        }
        if self._eval_flops.unsupported_ops:
            details["flops_unsupported_ops"] = dict(sorted(self._eval_flops.unsupported_ops.items()))
        files = {"predictions.json": json.dumps(predictions, ensure_ascii=False, indent=0) + "\n",
                 "eval-v1.1.json": json.dumps(dataset, ensure_ascii=False) + "\n"}
        counted = self.counts_flops()
        return Evaluation(metrics=metrics, files=files, details=details, flops=2.0 * macs if counted else None,
                          flops_method=self.EVAL_FLOPS_METHOD if counted else None)

    def error_from_metric(self, metric_value: float) -> float:
        # 1 - F1 (F1 as a fraction). Thompson et al.'s SQuAD 1.1 fits use exact match instead
        # (analysis/constants.py; their notebook question-answering-on-squad-1-1.ipynb): a known gap.
        return 1.0 - metric_value
