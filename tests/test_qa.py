"""workload=qa: the official SQuAD v1.1 metric, the SQuAD reader, the CoNLL-2003 span-QA generator, BERT's
windows and span search, the loss, the BERT model and the run folder's re-scorable files. CPU, seconds."""
from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from harness.errors import DataNotFoundError, UserError
from harness.runner import run
from harness.workloads.ner import read_conll
from harness.workloads.qa import (
    QaBatch,
    QaConfig,
    QaData,
    QaDataConfig,
    QuestionAnswering,
    best_spans,
    exact_match_score,
    f1_score,
    normalize_answer,
    rescore_files,
    squad_evaluate,
)
from harness.workloads.qa_data import (
    QaExample,
    Window,
    cached_cloze,
    cached_wordpiece,
    conll_documents,
    doc_spans,
    generate_cloze,
    is_max_context,
    make_windows,
    parse_squad,
    read_squad,
    sentences_per_document,
    squad_json,
    token_span,
)
from models import build_model
from models.bert_qa import load_pretrained, num_params_formula, scaled_dims

def conll(*docs: list[list[tuple[str, str]]]) -> str:
    """A CoNLL-2003 file of documents of sentences of (token, tag)."""
    lines = []
    for doc in docs:
        lines += ["-DOCSTART- -X- -X- O", ""]
        for sentence in doc:
            lines += [f"{tok} NN I-NP {tag}" for tok, tag in sentence] + [""]
    return "\n".join(lines) + "\n"


def s(text: str) -> list[tuple[str, str]]:
    """'John/I-PER Smith/I-PER went' -> [(John, I-PER), (Smith, I-PER), (went, O)]."""
    return [tuple(w.split("/")) if "/" in w else (w, "O") for w in text.split()]


DOC1 = [s("John/I-PER Smith/I-PER visited Bonn/I-LOC ."),
        s("Smith/I-PER met Kohl/I-PER in Bonn/I-LOC on Monday ."),
        s("Reuters/I-ORG said nothing ."),
        s("Kohl/I-PER left .")]
DOC2 = [s("Bonn/I-LOC is quiet ."), s("Paris/I-LOC is not .")]


# ---------------------------------------------------------------- the official metric
def test_normalize_answer_lowers_strips_punctuation_articles_and_whitespace():
    assert normalize_answer("The  Quick, Brown fox!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # 'the' only as a word
    assert normalize_answer("U.S.-led") == "usled"


def test_exact_match_and_f1_hand_checked():
    assert exact_match_score("Denver Broncos", "the Denver Broncos.")
    assert not exact_match_score("Denver", "Denver Broncos")
    # pred {cat, sat}, gold {cat, sat, on, mat}: precision 1, recall 1/2
    assert f1_score("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    # pred on x3, gold {on, mat}: one token in common, precision 1/3, recall 1/2 -> F1 0.4
    assert f1_score("on on on", "on the mat") == pytest.approx(0.4)
    assert f1_score("dog", "cat") == 0 and f1_score("the", "cat") == 0


def test_evaluate_takes_the_max_over_gold_answers_and_scores_a_missing_answer_zero(capsys):
    dataset = [{"paragraphs": [{"context": "x", "qas": [
        {"id": "a", "answers": [{"text": "Denver Broncos"}, {"text": "Broncos"}]},
        {"id": "b", "answers": [{"text": "Santa Clara"}]},
        {"id": "c", "answers": [{"text": "blue and gold"}]}]}]}]
    out = squad_evaluate(dataset, {"a": "broncos", "c": "gold"})
    # a: EM 1 (second gold), F1 1; b: missing, 0; c: precision 1, recall 1/3 ('and' is no article), F1 1/2
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 0 + 0.5) / 3)
    assert "Unanswered question b will receive score 0." in capsys.readouterr().err


# ---------------------------------------------------------------- SQuAD files
SQUAD_V2 = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{
    "context": "Normandy is a region in France.",
    "qas": [{"id": "q1", "question": "Where is Normandy?", "answers": [{"text": "France", "answer_start": 24}],
             "is_impossible": False},
            {"id": "q2", "question": "Who ate it?", "answers": [], "is_impossible": True},
            {"id": "q3", "question": "What is it?", "answers": [{"text": "a region", "answer_start": 0}]}]}]}]}


def test_reader_skips_and_counts_unanswerable_and_misaligned_answers():
    examples, counts = parse_squad(SQUAD_V2, "x.json")
    assert [e.qid for e in examples] == ["q1", "q3"]
    assert (counts.questions, counts.unanswerable_skipped, counts.answers_misaligned, counts.kept) == (3, 1, 1, 2)
    assert examples[0].aligned_answers() == [(24, 30)] and examples[1].aligned_answers() == []


def test_reader_errors_name_the_file_and_the_place(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope.json: not found"):
        read_squad(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n{"paragraphs": [}', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.json:2: not JSON"):
        read_squad(bad)
    broken = json.loads(json.dumps(SQUAD_V2))
    del broken["data"][0]["paragraphs"][0]["qas"][2]["id"]
    with pytest.raises(UserError, match=r"x.json: data\[0\].paragraphs\[0\].qas\[2\]: missing 'id'"):
        parse_squad(broken, "x.json")


def test_squad_json_round_trips_through_the_reader():
    examples, _ = parse_squad(SQUAD_V2, "x.json")
    again, counts = parse_squad(squad_json(examples), "y.json")
    assert [(e.qid, e.question, e.context, e.answers) for e in again] == \
        [(e.qid, e.question, e.context, e.answers) for e in examples]
    assert counts.unanswerable_skipped == 0


def test_shared_squad_sample_counts(shared_data):
    train, tc = read_squad(shared_data / "squad-sample" / "train-v1.1-3articles.json")
    dev, dc = read_squad(shared_data / "squad-sample" / "dev-v2.0-first5articles.json")
    assert (tc.questions, tc.kept, tc.unanswerable_skipped) == (396, 396, 0)
    assert (dc.questions, dc.unanswerable_skipped, dc.kept) == (1407, 702, 705)


# ---------------------------------------------------------------- the generator
def test_documents_are_cut_at_docstart_by_the_ner_reader(tmp_path, shared_data):
    path = tmp_path / "f.conll"
    path.write_text(conll(DOC1, DOC2), encoding="utf-8")
    docs = conll_documents(path)
    assert [len(d) for d in docs] == [4, 2]
    assert docs[0][0] == (["John", "Smith", "visited", "Bonn", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"])
    sizes = sentences_per_document(shared_data / "conll2003" / "eng.testb")
    assert len(sizes) == 231 and sum(sizes) == len(read_conll(shared_data / "conll2003" / "eng.testb"))


def test_cloze_questions_hand_checked(tmp_path):
    path = tmp_path / "f.conll"
    path.write_text(conll(DOC1, DOC2), encoding="utf-8")
    examples, counts = generate_cloze(conll_documents(path), "t", context_words=100)
    by_q = {e.question: e for e in examples}
    # sentence 1 of document 0: 'Smith' has no other mention ('John Smith' is another string); Kohl and
    # Bonn do. Context: the other three sentences, 26 + 23 characters before 'Kohl'.
    assert "who met Kohl in Bonn on Monday ." not in by_q
    e = by_q["Smith met who in Bonn on Monday ."]
    assert e.context == "John Smith visited Bonn . Reuters said nothing . Kohl left ."
    assert e.answers == [("Kohl", 49)] and e.context[49:53] == "Kohl"
    assert by_q["Smith met Kohl in where on Monday ."].answers == [("Bonn", 19)]
    assert e.entities[0] == ("John Smith", 0)
    e = by_q["John Smith visited where ."]
    assert e.context == "Smith met Kohl in Bonn on Monday . Reuters said nothing . Kohl left ."
    assert e.answers == [("Bonn", 18)]
    # 'Bonn is quiet .' of document 2 finds no Bonn in its context ('Paris is not .'): not generated
    assert not any(q.startswith("where is quiet") for q in by_q)
    assert all(a[0] == e.context[a[1]:a[1] + len(a[0])] for e in examples for a in e.answers)
    assert counts.questions == len(examples) and counts.not_in_context == counts.entity_strings - len(examples)
    assert len(examples) == 4  # Smith met who / Smith met Kohl in where / John Smith visited where / who left
    assert by_q["who left ."].answers == [("Kohl", 36)]  # after "John Smith visited Bonn . Smith met "


def test_cloze_keeping_the_question_sentence_asks_about_every_entity(tmp_path):
    path = tmp_path / "f.conll"
    path.write_text(conll(DOC1, DOC2), encoding="utf-8")
    examples, counts = generate_cloze(conll_documents(path), "t", context_words=100, keep_sentence=True)
    # distinct entity strings per sentence: 2 + 3 + 1 + 1 in document 1, 1 + 1 in document 2
    assert counts.questions == counts.entity_strings == len(examples) == 9 and counts.not_in_context == 0
    e = {e.question: e for e in examples}["who met Kohl in Bonn on Monday ."]
    assert e.context == "John Smith visited Bonn . Smith met Kohl in Bonn on Monday . Reuters said nothing . Kohl left ."
    assert e.answers == [("Smith", 26)]  # 'John Smith' is another string
    e = {e.question: e for e in examples}["where is quiet ."]
    assert e.context == "Bonn is quiet . Paris is not ." and e.answers == [("Bonn", 0)]


def test_context_is_the_nearest_sentences_that_fit_at_least_one():
    from harness.workloads.qa_data import _context_sentences

    doc = [(t.split(), []) for t in ("a b c d e", "f g h i j k l m", "n o p q", "r s t")]
    assert _context_sentences(doc, 3, 5) == [2]  # 4 words; the next nearest (8) does not fit
    assert _context_sentences(doc, 1, 10) == [0, 2]  # 5 + 4 words; 3 more would make 12
    assert _context_sentences(doc, 0, 1) == [1]  # at least one, even if longer
    # keeping the question's sentence: it counts against the words, its neighbours join while they fit
    assert _context_sentences(doc, 1, 10, keep_sentence=True) == [1]
    assert _context_sentences(doc, 3, 10, keep_sentence=True) == [2, 3]


# ---------------------------------------------------------------- windows and spans
def test_doc_spans_and_max_context_as_run_squad():
    # windows of 4 starting 2 apart, the last one ending at the context's end
    assert doc_spans(10, 4, 2) == [(0, 4), (2, 4), (4, 4), (6, 4)]
    assert doc_spans(3, 4, 2) == [(0, 3)]
    assert doc_spans(5, 4, 3) == [(0, 4), (3, 2)]
    spans = [(0, 4), (2, 4), (4, 4), (6, 4)]
    # token 3: window 0 gives min(3, 0) = 0, window 1 min(1, 2) = 1, window 2 no: window 1 wins
    assert [is_max_context(spans, w, 3) for w in range(4)] == [False, True, False, False]
    # token 4: windows 1 (min(2, 1) = 1) and 2 (min(0, 3) = 0): window 1
    assert [is_max_context(spans, w, 4) for w in range(4)] == [False, True, False, False]
    assert is_max_context(spans, 0, 0) and is_max_context(spans, 3, 9)


def test_token_span_covers_the_characters():
    offsets = [(0, 4), (5, 10), (10, 12), (13, 18)]  # "John Smith's house": Smith + 's as two pieces
    assert token_span(offsets, 5, 12) == (1, 2)
    assert token_span(offsets, 0, 4) == (0, 0)
    assert token_span(offsets, 6, 8) == (1, 1)  # inside one token
    assert token_span(offsets, 19, 22) is None


def _tokenizer(examples, size=200):
    return cached_wordpiece([e.context for e in examples] + [e.question for e in examples], size, False, None)[0]


def test_windows_hold_the_gold_span_where_it_lies_and_cls_elsewhere():
    context = " ".join(f"w{i}" for i in range(40)) + " Paris " + " ".join(f"v{i}" for i in range(40))
    ex = QaExample("q", "t", "where is it ?", context, [("Paris", context.index("Paris"))])
    tok, _, _ = cached_wordpiece([context, ex.question], 300, False, None)
    windows = make_windows([ex], tok, max_seq_len=40, doc_stride=16, max_question_tokens=8, with_targets=True)
    assert len(windows) > 2
    with_answer = [w for w in windows if w.starts != [0]]
    assert with_answer and all(w.starts == [0] and w.ends == [0] for w in windows if w not in with_answer)
    for w in with_answer:
        a, b = w.starts[0] - w.ctx_start, w.ends[0] - w.ctx_start
        assert context[w.offsets[a][0]:w.offsets[b][1]] == "Paris"
        assert len(w.input_ids) <= 40 and w.input_ids[w.ctx_start - 1] == tok.token_to_id("[SEP]")
    # every context token is the max-context token of exactly one window
    covered = {}
    for w in windows:
        for off, best in zip(w.offsets, w.max_context):
            covered[off] = covered.get(off, 0) + best
    assert set(covered.values()) == {1}


def test_best_span_respects_context_max_context_and_length():
    w = Window(0, [2, 5, 3, 7, 8, 9, 10, 3], ctx_start=3, offsets=[(0, 1), (2, 3), (4, 5), (6, 7)],
               max_context=[True, False, True, True])
    logits = torch.full((1, 8, 2), -5.0)
    logits[0, 1, :] = 100.0  # a question token: never a span
    logits[0, 4, 0] = 50.0  # context token 1 is not max-context here: no start
    logits[0, 5, 0] = 3.0
    logits[0, 3, 0] = 2.0
    logits[0, 6, 1] = 4.0
    logits[0, 4, 1] = 1.0
    assert best_spans(logits, [w], max_answer_tokens=5) == [(7.0, 2, 3)]
    # at most 1 token: the best single-token span is start 2 (3.0) + end 2 (-5.0) vs start 0 + end 0, ...
    score, first, last = best_spans(logits, [w], max_answer_tokens=1)[0]
    assert first == last and score == max(logits[0, p, 0] + logits[0, p, 1] for p in (3, 5, 6))


def test_loss_sums_the_probability_of_every_gold_position():
    """Uniform logits over 6 real tokens with gold starts {1, 3} and end {4}: start NLL log(6/2), end log 6."""
    class Zeros(torch.nn.Module):
        def forward(self, ids, types):
            return torch.zeros(*ids.shape, 2, requires_grad=True)

    ids = torch.tensor([[2, 5, 6, 7, 8, 3, 0, 0]])
    start = torch.zeros(1, 8, dtype=torch.bool)
    end = torch.zeros(1, 8, dtype=torch.bool)
    start[0, [1, 3]] = True
    end[0, 4] = True
    batch = QaBatch(ids, torch.zeros_like(ids), start, end, 1, 6, [0])
    total, count = QuestionAnswering(OmegaConf.create({}), torch.device("cpu")).loss(Zeros(), batch)
    assert count == 1 and total.item() == pytest.approx((math.log(3) + math.log(6)) / 2)


# ---------------------------------------------------------------- the model
def test_bert_base_has_the_known_size():
    """BERT-base with the 30,522-piece uncased vocabulary and the 2-unit span head: 108,893,186
    parameters (Hugging Face's BertForQuestionAnswering of bert-base-uncased; the paper's 110M
    includes the 590,592-parameter pooler that SQuAD does not use)."""
    assert scaled_dims(1.0) == (768, 12, 12) and scaled_dims(1 / 6) == (128, 2, 2) and scaled_dims(0.25) == (192, 3, 3)
    assert num_params_formula(30522, 768, 12, 3072) == 108_893_186
    with torch.device("meta"):
        model = build_model("bert", scale=1.0, vocab_size=30522)
    assert sum(p.numel() for p in model.parameters()) == 108_893_186
    assert len(model.bert.encoder.layer) == 12 and model.bert.encoder.layer[0].attention.self.heads == 12
    small = build_model("bert", scale=1 / 6, vocab_size=1000)
    assert sum(p.numel() for p in small.parameters()) == num_params_formula(1000, 128, 2, 512)


def test_init_std_sets_the_initial_weights_and_defaults_to_berts():
    """BERT's initializer_range (0.02) by default; ``init_std`` draws every weight matrix and embedding
    from N(0, init_std) instead, biases zero; zero or negative is an error."""
    torch.manual_seed(0)
    base = build_model("bert", scale=1 / 3, head_dim=32, layers=2, vocab_size=2000)
    wide = build_model("bert", scale=1 / 3, head_dim=32, layers=2, vocab_size=2000, init_std=0.06)
    for model, std in ((base, 0.02), (wide, 0.06)):
        for w in (model.bert.embeddings.word_embeddings.weight[1:], model.bert.encoder.layer[1].intermediate.dense.weight,
                  model.bert.encoder.layer[0].attention.self.query.weight):
            assert w.std().item() == pytest.approx(std, rel=0.05)
        assert model.bert.encoder.layer[0].attention.self.query.bias.abs().max() == 0
        assert model.bert.embeddings.word_embeddings.weight[0].abs().max() == 0  # [PAD]
    with pytest.raises(ValueError, match="init_std"):
        build_model("bert", scale=1 / 12, vocab_size=50, init_std=0.0)


def test_outputs_do_not_depend_on_padding():
    model = build_model("bert", scale=1 / 12, vocab_size=50).eval()
    ids = torch.tensor([[2, 7, 8, 3, 9, 10, 3]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        a = model(ids, types)
        b = model(padded, torch.cat([types, torch.zeros(1, 5, dtype=torch.long)], 1))
    assert torch.allclose(a, b[:, :7], atol=1e-5)


def test_pretrained_weights_load_from_ours_or_hugging_face_names(tmp_path):
    model = build_model("bert", scale=1 / 12, vocab_size=50).eval()
    state = dict(model.state_dict())
    state["bert.pooler.dense.weight"] = torch.zeros(64, 64)  # Hugging Face extras are ignored
    torch.save(state, tmp_path / "w.pt")
    loaded = build_model("bert", scale=1 / 12, vocab_size=50, pretrained=str(tmp_path / "w.pt")).eval()
    ids = torch.tensor([[2, 7, 8, 3, 9, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids, torch.zeros_like(ids)), loaded(ids, torch.zeros_like(ids)))
    assert load_pretrained(loaded, str(tmp_path / "w.pt")) == ["bert.pooler.dense.weight"]
    with pytest.raises(ValueError, match="word_embeddings.weight has shape"):
        build_model("bert", scale=1 / 12, vocab_size=60, pretrained=str(tmp_path / "w.pt"))
    with pytest.raises(ValueError, match="no such file"):
        build_model("bert", scale=1 / 12, vocab_size=50, pretrained=str(tmp_path / "none.pt"))


# ---------------------------------------------------------------- data and runs
def _cfg(tmp_path, root, **data):
    wcfg = OmegaConf.structured(QaConfig(cache_dir=str(tmp_path / "cache"), vocab_size=400, max_seq_len=96,
                                         doc_stride=32, max_question_tokens=32))
    dcfg = OmegaConf.structured(QaDataConfig(root=str(root), **data))
    return OmegaConf.create({"workload": wcfg, "data": dcfg, "scale": 1 / 12,
                             "model": {"name": "bert", "dropout": 0.0, "attention_dropout": 0.0},
                             "trainer": {"eval_batch_size": 16}})


def test_generated_data_is_cached_as_squad_json_and_read_back(tmp_path):
    (tmp_path / "c").mkdir()
    for name, docs in (("train", (DOC1, DOC2, DOC1)), ("dev", (DOC2,)), ("test", (DOC1,))):
        (tmp_path / "c" / name).write_text(conll(*docs), encoding="utf-8")
    cfg = _cfg(tmp_path, tmp_path / "c", train_file="train", dev_file="dev", test_file="test")
    cfg.workload.eval_dev = True
    data = QaData(cfg, torch.device("cpu"))
    cache = data.details["test"]["cache_file"]
    assert data.details["test"]["cache_hit"] is False and cache.startswith(str(tmp_path / "cache"))
    obj = json.load(open(cache))
    assert obj["version"] == "1.1" and obj["generator"]["questions"] == 7  # every entity string of DOC1
    again = QaData(cfg, torch.device("cpu"))
    assert again.details["test"]["cache_hit"] and again.details["wordpiece"]["cache_hit"]
    assert [e.__dict__ for e in again.test.examples] == [e.__dict__ for e in data.test.examples]
    assert data.num_train == 16 and data.num_eval == 7 and len(data.dev) == 2  # one window per question here
    ex, counts, gen, _, hit = cached_cloze(tmp_path / "c" / "test", "test", 100, None, True)  # no cache: same parse
    assert not hit and [e.__dict__ for e in ex] == [e.__dict__ for e in data.test.examples]
    # the dev split is scored beside the test split when asked
    workload = QuestionAnswering(cfg, torch.device("cpu"))
    data = workload.build_data()
    with torch.no_grad():
        ev = workload.evaluate(workload.build_model(data).eval(), data)
    assert {"f1", "dev_f1", "dev_exact_match", "dev_first_entity_f1"} <= set(ev.metrics)
    assert ev.flops > 0 and json.loads(ev.files["eval-v1.1.json"])["version"] == "1.1"


def test_bad_settings_are_one_line_errors(tmp_path, shared_data):
    with pytest.raises(DataNotFoundError, match="no such folder"):
        QaData(_cfg(tmp_path, tmp_path / "nowhere"), torch.device("cpu"))
    cfg = _cfg(tmp_path, shared_data / "squad-sample", format="squad", train_file="train-v1.1-3articles.json",
               dev_file=None, test_file="dev-v2.0-first5articles.json")
    cfg.workload.max_seq_len = 20
    with pytest.raises(UserError, match="max_seq_len=20 leaves no room"):
        QaData(cfg, torch.device("cpu"))
    cfg.workload.max_seq_len, cfg.workload.doc_stride = 96, 0
    with pytest.raises(UserError, match="workload.doc_stride=0 is invalid"):
        QaData(cfg, torch.device("cpu"))


def test_tiny_run_writes_rescorable_predictions_and_the_baseline(tmp_path, compose_workload):
    cfg = compose_workload(tmp_path, "qa", "measure.codecarbon=false")
    r = run(cfg, tmp_path / "run", ["workload=qa", "preset=tiny"])
    assert r["status"] == "ok", r["failure_reason"]
    assert (r["benchmark"], r["dataset"], r["metric_name"]) == ("squad1.1", "conll2003_qa", "f1")
    # the default scores the dev split too (eng.testa: how its settings were chosen)
    test_keys = {"f1", "exact_match", "first_entity_f1", "first_entity_exact_match"}
    assert set(r["metrics"]) == test_keys | {f"dev_{k}" for k in test_keys}
    assert r["error"] == pytest.approx(1 - r["metric_value"])
    assert r["metric_details"]["first_entity_f1"] == r["metrics"]["first_entity_f1"] > 0
    # re-scored from the two files alone, as evaluate-v1.1.py does
    official = rescore_files(tmp_path / "run" / "eval-v1.1.json", tmp_path / "run" / "predictions.json")
    assert official["f1"] / 100 == pytest.approx(r["metrics"]["f1"], abs=1e-4)
    assert official["exact_match"] / 100 == pytest.approx(r["metrics"]["exact_match"], abs=1e-4)
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    scored = json.loads((tmp_path / "run" / "eval-v1.1.json").read_text())
    ids = [qa["id"] for a in scored["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert sorted(ids) == sorted(predictions) and len(ids) == r["eval_samples"] == 60
    # every prediction is a span of its context
    contexts = {qa["id"]: p["context"] for a in scored["data"] for p in a["paragraphs"] for qa in p["qas"]}
    assert all(pred and pred in contexts[q] for q, pred in predictions.items())
    assert r["eval_flops"] > 0 and r["flops_unsupported_ops"] == {}


def test_squad_sample_trains_and_evaluates_every_answerable_question(tmp_path, compose_workload, shared_data):
    cfg = compose_workload(tmp_path, "qa", "data=squad_sample", f"data.root={shared_data / 'squad-sample'}",
                           "data.eval_subset=null", "measure.codecarbon=false", "measure.count_flops=false",
                           "trainer.max_steps=4", "workload.max_seq_len=256", "workload.doc_stride=128",
                           "trainer.eval_batch_size=128")
    r = run(cfg, tmp_path / "run", ["workload=qa", "data=squad_sample"])
    assert r["status"] == "ok", r["failure_reason"]
    assert r["dataset"] == "squad_sample" and r["eval_samples"] == 705
    assert r["metric_details"]["unanswerable_skipped"] == 702 and r["metric_details"]["first_entity_f1"] is None
    assert 0.0 <= r["metrics"]["exact_match"] <= r["metrics"]["f1"] <= 1.0
    official = rescore_files(tmp_path / "run" / "eval-v1.1.json", tmp_path / "run" / "predictions.json")
    assert official["f1"] / 100 == pytest.approx(r["metric_value"], abs=1e-4)
