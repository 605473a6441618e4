"""Data of the question-answering workload: the SQuAD reader, the CoNLL-2003 span-QA generator, the
word-piece tokenizer and BERT's sliding windows. The workload itself is :mod:`harness.workloads.qa`.

**SQuAD files** (Rajpurkar et al. 2016; v2.0: Rajpurkar et al. 2018): ``{"version", "data": [{"title",
"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}],
"is_impossible"?}]}]}]}``. v2.0 questions marked ``is_impossible`` are skipped (SQuAD 1.1 scoring has
no unanswerable questions) and counted; an answer whose text is not at its ``answer_start`` in the
context is counted and left out of training (the question is still scored on every gold text).

**The generated proxy** (``data.format=conll2003``), cloze questions from running text as CNN/Daily
Mail (Hermann et al. 2015), the Children's Book Test (Hill et al. 2016) and Lewis et al. ("Unsupervised
Question Answering by Cloze Translation", ACL 2019) built them: for every sentence of a CoNLL-2003
document and every distinct entity string (gold NER spans) in it, the question is that sentence with
each mention of the entity replaced by a question word for its type (PER "who", ORG "which
organisation", LOC "where", MISC "what"); the context is sentences of the same document around it,
nearest first and kept in document order, as many as fit in ``context_words`` words; the answers are
every mention of the same entity string in the context. With ``keep_sentence`` (the default,
``data.keep_question_sentence``) the question's own sentence is part of the context, as in Lewis et
al.'s cloze questions, so every entity string gives a question and the answer is found by matching the
question to its sentence (SQuAD's questions, too, mostly paraphrase the sentence that holds the
answer). Without it the question's sentence is left out (at least one other sentence is kept) and
only another mention of the entity answers, as in CNN/Daily Mail; a question whose entity is not
mentioned there is not generated, and counted. That variant is much harder to learn from scratch:
F1 barely above the first-entity baseline after minutes of CPU (README). Tokens are joined by single spaces. Train/dev/test come from
``eng.train``/``eng.testa``/``eng.testb``, so no document is in two splits. The questions are written
as SQuAD v1.1 JSON (with an extra ``entities`` list per paragraph: the context's gold entity mentions,
for the first-entity baseline) into ``workload.cache_dir`` and read back by :func:`read_squad`.

**Windows** follow google-research/bert ``run_squad.py``: ``[CLS] question [SEP] context [SEP]``,
questions cut to ``max_question_tokens``, contexts longer than the rest of ``max_seq_len`` cut into
windows that start ``doc_stride`` tokens apart, and each context token scored in the window where it
has the most context on both sides (``_check_is_max_context``). A training window whose context does
not hold an answer points at ``[CLS]`` (position 0), as ``run_squad.py`` does for SQuAD 1.1.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from common.atomic import write_atomic
from harness.errors import DataNotFoundError, UserError
from harness.workloads.ner import DOCSTART, iob1_to_iob2, read_conll
from harness.workloads.text import cached_tokenizer

log = logging.getLogger(__name__)

#: Question word replacing the entity, by CoNLL-2003 entity type.
QUESTION_WORDS = {"PER": "who", "ORG": "which organisation", "LOC": "where", "MISC": "what"}
#: Bump when the generator's recipe changes, so old caches are not reused.
GENERATOR_RECIPE = "conll-cloze-v1"
TOKENIZER_RECIPE = "wordpiece-bert-v1"
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # ids 0..4 in a trained vocabulary (BERT's names)


# ---------------------------------------------------------------- SQuAD files
@dataclass
class QaExample:
    """One answerable question: its context, its gold answers (text, character start) and, when the
    data has them, the context's entity mentions (text, character start) for the first-entity baseline."""

    qid: str
    title: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    entities: Optional[list[tuple[str, int]]] = None

    def aligned_answers(self) -> list[tuple[int, int]]:
        """Character spans [start, end) of the answers found at their ``answer_start``."""
        return [(s, s + len(t)) for t, s in self.answers if t and self.context[s : s + len(t)] == t]


@dataclass
class SquadCounts:
    """What reading a SQuAD file kept and left out."""

    version: Optional[str] = None
    articles: int = 0
    questions: int = 0  # every question in the file
    unanswerable_skipped: int = 0  # v2.0 is_impossible: not scored under SQuAD 1.1
    no_answer_skipped: int = 0  # answerable but with no gold answer (malformed)
    answers_misaligned: int = 0  # answer text not at answer_start: left out of training
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _need(obj: Any, key: str, kind: Any, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{where}: missing {key!r} (not SQuAD format)")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise UserError(f"{where}.{key}: expected {names}, found {type(value).__name__} (not SQuAD format)")
    return value


def parse_squad(obj: Any, where: str) -> tuple[list[QaExample], SquadCounts]:
    """The answerable questions of a SQuAD v1.1 or v2.0 object; ``where`` names it in errors."""
    counts = SquadCounts(version=str(obj.get("version")) if isinstance(obj, dict) and "version" in obj else None)
    examples: list[QaExample] = []
    for a, article in enumerate(_need(obj, "data", list, where)):
        at = f"{where}: data[{a}]"
        counts.articles += 1
        title = str(article.get("title", a)) if isinstance(article, dict) else str(a)
        for p, paragraph in enumerate(_need(article, "paragraphs", list, at)):
            pt = f"{at}.paragraphs[{p}]"
            context = _need(paragraph, "context", str, pt)
            entities = paragraph.get("entities")
            if entities is not None:
                entities = [(str(_need(e, "text", str, f"{pt}.entities[{i}]")), int(_need(e, "answer_start", int, f"{pt}.entities[{i}]")))
                            for i, e in enumerate(entities)]
            for q, qa in enumerate(_need(paragraph, "qas", list, pt)):
                qt = f"{pt}.qas[{q}]"
                counts.questions += 1
                qid, question = str(_need(qa, "id", (str, int), qt)), _need(qa, "question", str, qt)
                if qa.get("is_impossible", False):
                    counts.unanswerable_skipped += 1
                    continue
                answers = [(_need(x, "text", str, f"{qt}.answers[{i}]"), _need(x, "answer_start", int, f"{qt}.answers[{i}]"))
                           for i, x in enumerate(_need(qa, "answers", list, qt))]
                if not answers:
                    counts.no_answer_skipped += 1
                    continue
                ex = QaExample(qid, title, question, context, answers, entities)
                if len(ex.aligned_answers()) < len(answers):
                    counts.answers_misaligned += 1
                examples.append(ex)
    counts.kept = len(examples)
    return examples, counts


def read_squad(path: Path) -> tuple[list[QaExample], SquadCounts]:
    """:func:`parse_squad` of a JSON file; a missing file or bad JSON is a one-line error."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found (a SQuAD-format JSON file; point data.root at the folder that holds it)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    return parse_squad(obj, str(path))


def squad_json(examples: Sequence[QaExample], version: str = "1.1", with_entities: bool = False) -> dict[str, Any]:
    """SQuAD-format object of ``examples`` (articles by title, paragraphs by context, in order)."""
    data: list[dict[str, Any]] = []
    for ex in examples:
        if not data or data[-1]["title"] != ex.title:
            data.append({"title": ex.title, "paragraphs": []})
        paragraphs = data[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != ex.context:
            paragraphs.append({"context": ex.context, "qas": []})
            if with_entities and ex.entities is not None:
                paragraphs[-1]["entities"] = [{"text": t, "answer_start": s} for t, s in ex.entities]
        paragraphs[-1]["qas"].append({"id": ex.qid, "question": ex.question,
                                      "answers": [{"text": t, "answer_start": s} for t, s in ex.answers]})
    return {"version": version, "data": data}


# ---------------------------------------------------------------- CoNLL-2003 documents
def sentences_per_document(path: Path) -> list[int]:
    """How many of :func:`read_conll`'s sentences each ``-DOCSTART-`` document of ``path`` holds
    (documents without a sentence left out), by the reader's own rule: a sentence ends at a blank or
    ``-DOCSTART-`` line."""
    counts: list[int] = [0]
    in_sentence = False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            cols = line.split()
            if not cols or cols[0] == DOCSTART:
                if in_sentence:
                    counts[-1] += 1
                    in_sentence = False
                if cols and counts[-1]:
                    counts.append(0)
                continue
            in_sentence = True
    if in_sentence:
        counts[-1] += 1
    return [n for n in counts if n]


def conll_documents(path: Path) -> list[list[tuple[list[str], list[str]]]]:
    """The documents of a CoNLL-2003 file: lists of (tokens, IOB2 tags) sentences, read by
    :func:`harness.workloads.ner.read_conll` and cut at its ``-DOCSTART-`` lines."""
    sentences = read_conll(path)
    sizes = sentences_per_document(path)
    if sum(sizes) != len(sentences):  # the two readings disagree: a bug, not bad data
        raise RuntimeError(f"{path}: {sum(sizes)} sentences in documents, {len(sentences)} read")
    docs, start = [], 0
    for n in sizes:
        docs.append([(toks, iob1_to_iob2(tags)) for toks, tags in sentences[start : start + n]])
        start += n
    return docs


def entity_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """[start, end) token spans and types of the entities of a valid IOB2 sequence."""
    spans: list[tuple[int, int, str]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((i, i + 1, tag[2:]))
        elif tag.startswith("I-") and spans and spans[-1][1] == i and spans[-1][2] == tag[2:]:
            spans[-1] = (spans[-1][0], i + 1, tag[2:])
    return spans


@dataclass
class GeneratorCounts:
    documents: int = 0
    sentences: int = 0
    entity_strings: int = 0  # distinct entity strings per sentence: the candidate questions
    not_in_context: int = 0  # left out: the entity is not mentioned in the context
    questions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def generate_cloze(documents: Sequence[Sequence[tuple[list[str], list[str]]]], split: str, context_words: int,
                   keep_sentence: bool = False) -> tuple[list[QaExample], GeneratorCounts]:
    """Span-QA examples from CoNLL-2003 documents (see the module docstring); with ``keep_sentence``
    the question's own sentence stays in the context."""
    counts = GeneratorCounts(documents=len(documents))
    out: list[QaExample] = []
    for d, doc in enumerate(documents):
        counts.sentences += len(doc)
        spans = [entity_spans(tags) for _, tags in doc]
        for i, (tokens, _) in enumerate(doc):
            strings: dict[str, str] = {}  # entity string -> type of its first mention in the sentence
            for s, e, kind in spans[i]:
                strings.setdefault(" ".join(tokens[s:e]), kind)
            if not strings:
                continue
            chosen = _context_sentences(doc, i, context_words, keep_sentence)
            parts, mentions, offset = [], [], 0  # mentions: (text, char start) of the context's entities
            for j in chosen:
                text = " ".join(doc[j][0])
                starts = _token_starts(doc[j][0], offset)
                mentions.extend((" ".join(doc[j][0][s:e]), starts[s]) for s, e, _ in spans[j])
                parts.append(text)
                offset += len(text) + 1
            context = " ".join(parts)
            for k, (entity, kind) in enumerate(strings.items()):
                counts.entity_strings += 1
                answers = [(t, c) for t, c in mentions if t == entity]
                if not answers:
                    counts.not_in_context += 1
                    continue
                question = _replace(tokens, spans[i], entity, QUESTION_WORDS.get(kind, "what"))
                out.append(QaExample(f"{split}-d{d:04d}-s{i:03d}-e{k}", f"{split} document {d}", question,
                                     context, answers, list(mentions)))
    counts.questions = len(out)
    return out, counts


def _context_sentences(doc: Sequence[tuple[list[str], list[str]]], i: int, context_words: int,
                       keep_sentence: bool = False) -> list[int]:
    """Indices of the sentences around ``i`` (nearest first, before then after at equal distance)
    that fit in ``context_words`` words, at least one, in document order; ``i`` itself left out unless
    ``keep_sentence`` (then it comes first and its neighbours join while they fit)."""
    chosen: list[int] = [i] if keep_sentence else []
    words = len(doc[i][0]) if keep_sentence else 0
    for dist in range(1, len(doc)):
        for j in (i - dist, i + dist):
            if 0 <= j < len(doc):
                n = len(doc[j][0])
                if chosen and words + n > context_words:
                    return sorted(chosen)
                chosen.append(j)
                words += n
    return sorted(chosen)


def _token_starts(tokens: Sequence[str], offset: int) -> list[int]:
    starts, pos = [], offset
    for t in tokens:
        starts.append(pos)
        pos += len(t) + 1
    return starts


def _replace(tokens: Sequence[str], spans: Sequence[tuple[int, int, str]], entity: str, word: str) -> str:
    """The sentence with every mention of ``entity`` replaced by ``word``."""
    out, i = [], 0
    for s, e, _ in spans:
        if " ".join(tokens[s:e]) == entity:
            out.extend(tokens[i:s])
            out.append(word)
            i = e
    out.extend(tokens[i:])
    return " ".join(out)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_cloze(path: Path, split: str, context_words: int, cache_dir: Optional[Path], keep_sentence: bool = False
                 ) -> tuple[list[QaExample], SquadCounts, GeneratorCounts, Optional[Path], bool]:
    """Generated questions of one CoNLL-2003 file, as SQuAD v1.1 JSON in ``cache_dir`` (keyed by the
    file's SHA-256 and the settings) read back with :func:`read_squad`; with no cache the JSON text
    goes through the same parser in memory. Returns (examples, read counts, generator counts, cache
    file, cache hit)."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found (a CoNLL-2003 file; point data.root at the folder that holds it)")
    settings = dict(recipe=GENERATOR_RECIPE, file=file_sha256(path), split=split, context_words=context_words,
                    keep_sentence=keep_sentence)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    cache = None if cache_dir is None else cache_dir / f"cloze-{path.name}-{key}.json"
    if cache is not None and cache.is_file():
        try:
            obj = json.loads(cache.read_text(encoding="utf-8"))
            examples, counts = parse_squad(obj, str(cache))
            return examples, counts, GeneratorCounts(**obj["generator"]), cache, True
        except (ValueError, KeyError, TypeError, UserError) as exc:  # a damaged cache is regenerated
            log.warning("QA cache %s unreadable (%s): generating again", cache, exc)
    generated, gen_counts = generate_cloze(conll_documents(path), split, context_words, keep_sentence)
    obj = squad_json(generated, with_entities=True)
    obj["generator"] = gen_counts.as_dict()
    text = json.dumps(obj, ensure_ascii=False)
    if cache is not None:
        try:
            write_atomic(cache, text)
        except OSError as exc:
            log.warning("QA cache %s not written (%s)", cache, exc)
            cache = None
    if cache is not None:
        examples, counts = read_squad(cache)
    else:
        examples, counts = parse_squad(json.loads(text), f"{path.name} (generated)")
    return examples, counts, gen_counts, cache, False


# ---------------------------------------------------------------- word pieces
def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool):
    """A BERT-style WordPiece tokenizer (``tokenizers``: BertNormalizer, BertPreTokenizer) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = list(texts)
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    if [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special tokens got ids {[tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]}")
    return tokenizer


def load_vocab_file(path: Path, lowercase: bool):
    """A WordPiece tokenizer over a given ``vocab.txt`` (a pretrained BERT's vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    if not path.is_file():
        raise DataNotFoundError(f"workload.vocab_file={path}: not found (a BERT vocab.txt, one word piece per line)")
    vocab = {line.rstrip("\n"): i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(True))}
    missing = [t for t in (PAD, UNK, CLS, SEP) if t not in vocab]
    if missing:
        raise UserError(f"workload.vocab_file={path}: no {missing[0]} entry")
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def cached_wordpiece(texts: Sequence[str], vocab_size: int, lowercase: bool, cache_dir: Optional[Path]):
    """(tokenizer, cache file, cache hit): trained once per hash of its texts and settings."""
    import tokenizers

    digest = hashlib.sha256(json.dumps(dict(recipe=TOKENIZER_RECIPE, vocab_size=vocab_size, lowercase=lowercase,
                                            tokenizers=tokenizers.__version__), sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    return cached_tokenizer(cache_dir, f"wordpiece-{digest.hexdigest()[:20]}.json",
                            lambda: train_wordpiece(texts, vocab_size, lowercase))


# ---------------------------------------------------------------- windows
@dataclass
class Window:
    """One ``[CLS] question [SEP] context-part [SEP]`` sequence of an example."""

    example: int  # index of the example in its split
    input_ids: list[int]
    ctx_start: int  # sequence position of the first context token (question tokens + 2)
    offsets: list[tuple[int, int]]  # character span of each context token in the window
    max_context: list[bool]  # whether this window is the token's max-context window
    starts: list[int] = field(default_factory=list)  # gold start positions in the sequence (training)
    ends: list[int] = field(default_factory=list)


def doc_spans(num_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) of the context windows, as ``run_squad.py`` cuts them: windows of at most
    ``max_tokens`` starting ``stride`` apart, the last one ending at the context's end."""
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        length = min(num_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length >= num_tokens:
            return spans
        start += min(length, stride)


def is_max_context(spans: Sequence[tuple[int, int]], index: int, position: int) -> bool:
    """``run_squad.py``'s ``_check_is_max_context``: window ``index`` gives token ``position`` the most
    context (min of left and right context + 0.01 x window length; the first best wins)."""
    best_score, best = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, i
    return best == index


def token_span(offsets: Sequence[tuple[int, int]], char_start: int, char_end: int) -> Optional[tuple[int, int]]:
    """Tokens [first, last] covering the characters [char_start, char_end), or None if none overlap."""
    ends = [e for _, e in offsets]
    first = bisect.bisect_right(ends, char_start)
    starts = [s for s, _ in offsets]
    last = bisect.bisect_left(starts, char_end) - 1
    if first >= len(offsets) or last < first:
        return None
    return first, last


def make_windows(examples: Sequence[QaExample], tokenizer: Any, max_seq_len: int, doc_stride: int,
                 max_question_tokens: int, with_targets: bool) -> list[Window]:
    """Every window of every example (in order), with gold start/end positions when ``with_targets``."""
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    questions = tokenizer.encode_batch([ex.question for ex in examples], add_special_tokens=False)
    contexts = sorted({ex.context for ex in examples})
    encoded = dict(zip(contexts, tokenizer.encode_batch(contexts, add_special_tokens=False)))
    windows: list[Window] = []
    for n, ex in enumerate(examples):
        q_ids = questions[n].ids[:max_question_tokens]
        ctx = encoded[ex.context]
        room = max_seq_len - len(q_ids) - 3
        if room < 1:
            raise UserError(f"workload.max_seq_len={max_seq_len} leaves no room for the context after a "
                            f"{len(q_ids)}-token question (lower workload.max_question_tokens)")
        gold = []
        if with_targets:
            gold = [sp for sp in (token_span(ctx.offsets, a, b) for a, b in ex.aligned_answers()) if sp is not None]
        spans = doc_spans(len(ctx.ids), room, doc_stride)
        head = [cls_id, *q_ids, sep_id]
        for w, (start, length) in enumerate(spans):
            ids = head + ctx.ids[start : start + length] + [sep_id]
            win = Window(n, ids, len(head), list(ctx.offsets[start : start + length]),
                         [is_max_context(spans, w, start + p) for p in range(length)])
            if with_targets:
                inside = [(a, b) for a, b in gold if a >= start and b < start + length]
                win.starts = sorted({len(head) + a - start for a, _ in inside}) or [0]
                win.ends = sorted({len(head) + b - start for _, b in inside}) or [0]
            windows.append(win)
    return windows
