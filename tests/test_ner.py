"""workload=ner: the CoNLL-2003 reader, tagging schemes, the BiLSTM-CRF and the metric. CPU, seconds."""
from __future__ import annotations

import itertools
import random

import pytest
import torch
from omegaconf import OmegaConf

from harness.errors import DataNotFoundError, UserError
from harness.workloads import ner
from harness.workloads.ner import (
    NamedEntityRecognition,
    NerConfig,
    NerDataConfig,
    bioes_to_iob2,
    entity_scores,
    format_conll,
    iob1_to_iob2,
    iob2_to_bioes,
    parse_conll_predictions,
    read_conll,
    repair_iob2,
)
from harness.workloads.text import Vocab, length_buckets, pad_to_multiple
from models import build_model
from models.bilstm_crf import LinearChainCRF, MaskedBiLSTM

TINY_FILE = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- O O
BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O


"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- reader
def test_reader_splits_sentences_at_blank_lines_and_docstart(tmp_path):
    sentences = read_conll(write(tmp_path, "eng.train", TINY_FILE))
    assert [s[0] for s in sentences] == [
        ["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    assert sentences[0][1] == ["I-ORG", "O", "I-MISC", "O"]


@pytest.mark.parametrize("bad_line, why", [("EU NNP I-ORG", "4 columns"), ("EU NNP I-NP X-ORG", "not O, B-TYPE")])
def test_malformed_line_is_one_line_error_naming_file_and_line(tmp_path, bad_line, why):
    path = write(tmp_path, "eng.testa", TINY_FILE.replace("rejects VBZ I-VP O", bad_line))
    with pytest.raises(UserError) as info:
        read_conll(path)
    message = str(info.value)
    assert f"{path}:4:" in message and why in message and "\n" not in message


def test_missing_file_and_root_name_what_was_looked_for(tmp_path):
    with pytest.raises(DataNotFoundError, match="eng.testb: not found"):
        read_conll(tmp_path / "eng.testb")
    write(tmp_path, "eng.train", TINY_FILE)
    write(tmp_path, "eng.testa", TINY_FILE)
    with pytest.raises(DataNotFoundError, match="eng.testb"):
        ner.NerData(_cfg(tmp_path), torch.device("cpu"))
    with pytest.raises(DataNotFoundError, match="no such folder"):
        ner.NerData(_cfg(tmp_path / "nowhere"), torch.device("cpu"))


# ---------------------------------------------------------------- tagging schemes
def test_iob1_to_iob2_starts_every_entity_with_b():
    assert iob1_to_iob2(["I-ORG", "O", "I-PER", "I-PER", "B-PER", "I-LOC", "I-PER"]) == [
        "B-ORG", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "B-PER"]


def test_iob2_bioes_round_trip():
    iob2 = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-MISC"]
    bioes = iob2_to_bioes(iob2)
    assert bioes == ["B-PER", "I-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-MISC"]
    assert bioes_to_iob2(bioes) == iob2


@pytest.mark.parametrize("pred, repaired", [
    (["O", "I-PER", "I-PER"], ["O", "B-PER", "I-PER"]),  # stray I- starts an entity (conlleval)
    (["B-PER", "I-LOC"], ["B-PER", "B-LOC"]),  # a type change starts a new entity
    (["E-ORG", "O", "I-ORG", "E-ORG"], ["B-ORG", "O", "B-ORG", "I-ORG"]),  # stray E- as I-
    (["B-PER", "S-PER", "E-PER"], ["B-PER", "B-PER", "I-PER"]),  # S- always starts
])
def test_repair_gives_valid_iob2(pred, repaired):
    assert bioes_to_iob2(pred) == repaired
    assert repair_iob2(repaired) == repaired  # valid IOB2 is left as it is


def _conlleval_spans(tags):
    """Entity spans as conlleval.pl reads IOB tags (startOfChunk / endOfChunk, I-/E- as inside)."""
    spans, start, kind = set(), None, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, typ = (tag, "") if tag == "O" else (tag[0], tag[2:])
        prefix = {"E": "I", "S": "B"}.get(prefix, prefix)
        ends = start is not None and (prefix in ("B", "O") or typ != kind)
        if ends:
            spans.add((start, i, kind))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, typ
    return spans


def test_repaired_predictions_score_the_same_in_seqeval_strict_and_conlleval():
    rng = random.Random(0)
    tags = ["O", *(f"{p}-{t}" for p in "BIES" for t in ("PER", "LOC"))]
    gold = [bioes_to_iob2([rng.choice(tags) for _ in range(rng.randint(1, 12))]) for _ in range(300)]
    raw = [[rng.choice(tags) for _ in g] for g in gold]  # ill-formed, as an untrained model predicts
    pred = [bioes_to_iob2(p) for p in raw]
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, raw):
        gs, ps = _conlleval_spans(g), _conlleval_spans(p)
        tp, n_pred, n_gold = tp + len(gs & ps), n_pred + len(ps), n_gold + len(gs)
    f1 = 2 * tp / (n_pred + n_gold)
    assert entity_scores(gold, pred)["f1"] == pytest.approx(f1, abs=1e-12)


def test_predictions_file_rescores_to_the_same_f1():
    gold = [["B-PER", "I-PER", "O"], ["B-LOC"], ["O", "B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O"], ["O"], ["O", "B-ORG", "B-ORG"]]
    text = format_conll([["a", "b", "c"], ["d"], ["e", "f", "g"]], gold, pred)
    assert text.splitlines()[:4] == ["a B-PER B-PER", "b I-PER I-PER", "c O O", ""]
    assert parse_conll_predictions(text) == (gold, pred)
    assert entity_scores(*parse_conll_predictions(text)) == entity_scores(gold, pred)
    assert entity_scores(gold, pred)["f1"] == pytest.approx(2 * 1 / (3 + 3))


# ---------------------------------------------------------------- text helpers
def test_vocab_reserves_pad_and_unk_and_padding_multiples():
    vocab = Vocab.build(["b", "a", "b", "c"], min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "b"] and vocab.ids(["b", "zzz"]) == [2, 1]
    assert Vocab.build(["x", "y", "y"]).singleton_ids() == [Vocab.build(["x", "y", "y"]).id("x")]
    assert [pad_to_multiple(n, 8, cap=16) for n in (0, 1, 8, 9, 17)] == [8, 8, 8, 16, 16]


def test_length_buckets_are_reproducible_full_and_grouped_by_length():
    lengths = [random.Random(i).randint(1, 60) for i in range(1000)]
    batches = length_buckets(lengths, 32, torch.Generator().manual_seed(1), chunk_batches=10)
    again = length_buckets(lengths, 32, torch.Generator().manual_seed(1), chunk_batches=10)
    assert batches == again and len(batches) == 1000 // 32 and all(len(b) == 32 for b in batches)
    assert len({i for b in batches for i in b}) == 31 * 32
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # sorted within chunks: far below a random batch's spread (~55)


# ---------------------------------------------------------------- the CRF
def _brute_force(crf: LinearChainCRF, emissions: torch.Tensor, n: int) -> dict[tuple, float]:
    """Score of every tag sequence of the first n positions of a (1, T, K) emission tensor."""
    k = emissions.shape[-1]
    mask = torch.zeros(1, emissions.shape[1], dtype=torch.bool)
    mask[0, :n] = True
    out = {}
    for seq in itertools.product(range(k), repeat=n):
        tags = torch.zeros(1, emissions.shape[1], dtype=torch.long)
        tags[0, :n] = torch.tensor(seq)
        with torch.no_grad():
            out[seq] = float(crf.score(emissions, tags, mask))
    return out


@pytest.mark.parametrize("n", [3, 2, 1])
def test_crf_nll_and_viterbi_match_brute_force(n):
    torch.manual_seed(n)
    crf = LinearChainCRF(3)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(1, 3, 3, dtype=torch.float64)
    crf = crf.double()
    scores = _brute_force(crf, emissions, n)
    log_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
    mask = torch.tensor([[True] * n + [False] * (3 - n)])
    best = max(scores, key=scores.get)
    tags = torch.tensor([list(best) + [0] * (3 - n)])
    assert float(crf.nll(emissions, tags, mask).detach()) == pytest.approx(float(log_z) - scores[best], abs=1e-9)
    assert tuple(crf.decode(emissions, mask)[0, :n].tolist()) == best


def test_crf_batch_equals_sentence_by_sentence():
    torch.manual_seed(0)
    crf = LinearChainCRF(5)
    with torch.no_grad():
        crf.transitions.normal_()
    emissions, lengths = torch.randn(4, 7, 5), [7, 3, 1, 5]
    mask = torch.arange(7).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tags = torch.randint(0, 5, (4, 7))
    with torch.no_grad():
        nll, best = crf.nll(emissions, tags, mask), crf.decode(emissions, mask)
        for i, n in enumerate(lengths):
            one = torch.ones(1, n, dtype=torch.bool)
            single = crf.nll(emissions[i:i + 1, :n], tags[i:i + 1, :n], one)
            assert float(nll[i]) == pytest.approx(float(single), abs=1e-5)
            assert best[i, :n].tolist() == crf.decode(emissions[i:i + 1, :n], one)[0].tolist()


# ---------------------------------------------------------------- the model
def test_reversal_within_length_equals_a_bidirectional_lstm_per_sentence():
    torch.manual_seed(0)
    layer = MaskedBiLSTM(6, 4)
    lengths = [5, 2, 8, 1]
    x = torch.randn(4, 8, 6)
    out = layer(x, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        sentence = x[i : i + 1, :n]
        fwd, _ = layer.fwd(sentence)
        bwd, _ = layer.bwd(sentence.flip(1))
        reference = torch.cat([fwd, bwd.flip(1)], dim=-1)[0]
        torch.testing.assert_close(out[i, :n], reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn", "none"])
def test_emissions_do_not_depend_on_padding(char_encoder):
    torch.manual_seed(0)
    model = build_model("bilstm_crf", scale=0.25, vocab_size=30, num_chars=20, num_tags=5,
                        char_encoder=char_encoder).eval()
    words = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    chars = torch.randint(1, 20, (2, 4, 8))
    chars[..., 5:] = 0
    chars[0, 3] = 0
    chars[1, 2:] = 0
    mask = words != 0
    short = model(words, chars, mask)
    padded = model(torch.nn.functional.pad(words, (0, 4)), torch.nn.functional.pad(chars, (0, 8, 0, 4)),
                   torch.nn.functional.pad(mask, (0, 4)))
    assert padded.shape == (2, 8, 5)
    torch.testing.assert_close(padded[mask.nonzero(as_tuple=True)], short[mask.nonzero(as_tuple=True)],
                               rtol=1e-5, atol=1e-6)


def test_published_sizes_at_scale_one():
    model = build_model("bilstm_crf", scale=1.0, vocab_size=1000, num_chars=50, num_tags=17)
    assert model.word_embed.embedding_dim == 100  # Lample et al. 2016
    assert model.char_encoder.embed.embedding_dim == 25 and model.char_encoder.lstm.fwd.hidden_size == 25
    assert model.lstm.fwd.hidden_size == 100 and model.lstm.fwd.input_size == 150
    assert model.dropout.p == 0.5
    cnn = build_model("bilstm_crf", scale=1.0, vocab_size=1000, num_chars=50, num_tags=17, char_encoder="cnn")
    assert cnn.char_encoder.conv.out_channels == 30 and cnn.char_encoder.conv.kernel_size == (3,)  # Ma & Hovy 2016
    with pytest.raises(ValueError, match="char_encoder"):
        build_model("bilstm_crf", scale=1.0, char_encoder="gru")


# ---------------------------------------------------------------- the workload
def _cfg(root, **workload):
    return OmegaConf.create({
        "workload": OmegaConf.structured(NerConfig(**workload)),
        "data": OmegaConf.structured(NerDataConfig(root=str(root))),
        "model": {"name": "bilstm_crf", "char_encoder": "lstm", "dropout": 0.5, "output_dropout": 0.0, "crf": True},
        "scale": 0.125,
        "trainer": {"eval_batch_size": 64},
        "measure": {"count_flops": False},
    })


def test_tiny_files_train_and_evaluate(tmp_path):
    for name in ("eng.train", "eng.testa", "eng.testb"):
        write(tmp_path, name, TINY_FILE)
    cfg = _cfg(tmp_path)
    cfg.measure.count_flops = True
    workload = NamedEntityRecognition(cfg, torch.device("cpu"))
    data = workload.build_data()
    assert (data.name, data.num_train, data.num_eval) == ("conll2003", 3, 3)
    assert data.words.itos[:2] == ["<pad>", "<unk>"] and "eu" in data.words  # lowercased
    model = workload.build_model(data)
    batch = next(iter(data.train_batches(2, torch.Generator().manual_seed(0))))
    assert workload.batch_size_of(batch) == 2 and workload.positions_of(batch)[1] == 16
    total, count = workload.loss(model, batch)
    assert count == 2 and total.ndim == 0 and total.item() > 0
    evaluation = workload.evaluate(model.eval(), data)
    assert set(evaluation.metrics) == {"entity_f1", "precision", "recall", "dev_entity_f1", "dev_precision", "dev_recall"}
    assert list(evaluation.files) == list(workload.prediction_files) == ["predictions.conll"]
    assert evaluation.details["decoding"].startswith("Viterbi") and "flops_unsupported_ops" not in evaluation.details
    # test and dev (the same file here): one batch of shape (3, 8, 8) each, counted once by fvcore
    (macs,) = workload._eval_flops.macs.values()
    assert macs > 0 and evaluation.flops == 2 * 2 * macs
    assert workload.error_from_metric(0.8) == pytest.approx(0.2)


# ---------------------------------------------------------------- the real data
@pytest.fixture(scope="module")
def conll_data(shared_data):
    root = shared_data / "conll2003"
    if not (root / "eng.train").is_file():
        pytest.skip(f"{root}/eng.train not found")
    cfg = _cfg(root)
    cfg.data.eval_subset = 400
    workload = NamedEntityRecognition(cfg, torch.device("cpu"))
    return workload, workload.build_data()


def test_real_files_read_whole(shared_data):
    root = shared_data / "conll2003"
    counts = {name: len(read_conll(root / name)) for name in ("eng.train", "eng.testa", "eng.testb")}
    assert counts == {"eng.train": 13913, "eng.testa": 3250, "eng.testb": 3453}  # see shared/data/README.md


def test_real_epoch_meets_few_shapes(conll_data):
    workload, data = conll_data
    assert data.num_train == 13913 and data.num_eval == 400 and len(data.tags) == 17
    batches = list(data.train_batches(64, torch.Generator().manual_seed(0)))
    assert len(batches) == 13913 // 64
    shapes = {workload.shape_key(b) for b in batches}
    assert len(shapes) < 30
    real, padded = map(sum, zip(*(workload.positions_of(b) for b in batches)))
    assert real / padded > 0.75  # length bucketing keeps padding low


def test_real_evaluation_file_rescores_to_the_reported_f1(conll_data):
    workload, data = conll_data
    torch.manual_seed(0)
    model = build_model("bilstm_crf", scale=0.5, vocab_size=len(data.words), num_chars=len(data.chars),
                        num_tags=len(data.tags), char_encoder="cnn")
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for step, batch in zip(range(60), data.train_batches(32, torch.Generator().manual_seed(0))):
        total, count = workload.loss(model, batch)
        opt.zero_grad()
        (total / count).backward()
        opt.step()
    evaluation = workload.evaluate(model.eval(), data)
    gold, pred = parse_conll_predictions(evaluation.files["predictions.conll"])
    assert len(gold) == 400 and gold == data.test.gold_iob2
    assert entity_scores(gold, pred)["f1"] == pytest.approx(evaluation.metrics["entity_f1"], abs=1e-12)
    assert evaluation.metrics["entity_f1"] > 0.05  # 60 steps already find some entities
