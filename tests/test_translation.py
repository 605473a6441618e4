"""workload=translation: the readers, the hash split, the BPE cache, the Transformer, greedy decoding,
its FLOPs and the sacrebleu files. CPU, seconds."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from harness.errors import DataNotFoundError, UserError
from harness.workloads import translation as mt
from harness.workloads.translation import (
    BOS_ID,
    EOS_ID,
    DecodeFlops,
    Translation,
    TranslationConfig,
    TranslationData,
    TranslationDataConfig,
    bleu_chrf,
    cached_bpe,
    greedy_decode,
    hash_split,
    lines_file,
    read_parallel,
    read_tsv,
    split_key,
)
from models import build_model
from models.transformer_mt import scaled_dims

TSV = (
    "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n"
    "Run!\tCours\u202f!\n"
    "no tab on this line\n"
    "Run!\tCourez\u202f!\n"
    "\tempty source\n"
    "Hello.\t   \n"
    "I see.\tJe vois.\n"
)

SENTENCES = [
    ("I am cold.", "J'ai froid."), ("I am hungry.", "J'ai faim."), ("We are cold.", "Nous avons froid."),
    ("You are tall.", "Tu es grand."), ("He is tall.", "Il est grand."), ("She is hungry.", "Elle a faim."),
    ("I see the cat.", "Je vois le chat."), ("I see the dog.", "Je vois le chien."), ("Go.", "Va !"),
    ("Tom is here.", "Tom est ici."), ("Tom is cold.", "Tom a froid."), ("The dog is here.", "Le chien est ici."),
]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _cfg(tmp_path, root, **data):
    """A config node with the workload's and the dataset's defaults (as Hydra composes them)."""
    wcfg = OmegaConf.structured(TranslationConfig(cache_dir=str(tmp_path / "cache"), vocab_size=120,
                                                  bpe_min_frequency=1, max_train_tokens=32))
    dcfg = OmegaConf.structured(TranslationDataConfig(root=str(root), **data))
    return OmegaConf.create({"workload": wcfg, "data": dcfg, "scale": 0.125,
                             "model": {"name": "transformer", "dropout": 0.0},
                             "trainer": {"eval_batch_size": 5}})


def _corpus(n: int = 300, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(f"{src}\t{tgt}\n" for src, tgt in (rng.choice(SENTENCES) for _ in range(n)))


# ---------------------------------------------------------------- readers
def test_tsv_reader_counts_malformed_lines_by_kind_and_keeps_the_rest(tmp_path):
    pairs, keys, bad = read_tsv(write(tmp_path, "fra.txt", TSV))
    assert pairs == [("Go.", "Va !"), ("Run!", "Cours\u202f!"), ("Run!", "Courez\u202f!"), ("I see.", "Je vois.")]
    assert keys == ["Go.", "Run!", "Run!", "I see."]
    assert bad.counts == {"missing_column": 1, "empty_side": 2} and bad.total == 3
    assert bad.examples == {"missing_column": [3], "empty_side": [5, 6]}
    assert bad.details()["empty_side"] == {"lines": 2, "first_line_numbers": [5, 6]}
    # the other direction (French -> English) keeps the English split key
    pairs, keys, _ = read_tsv(write(tmp_path, "fra.txt", TSV), source_column=1, target_column=0)
    assert pairs[0] == ("Va !", "Go.") and keys[0] == "Go."


def test_parallel_reader_counts_empty_sides_and_refuses_misaligned_files(tmp_path):
    src = write(tmp_path, "train.en", "Hello.\n\nGood night.\nYes.\n")
    tgt = write(tmp_path, "train.fr", "Bonjour.\nRien.\nBonne nuit.\n \n")
    pairs, bad = read_parallel(src, tgt)
    assert pairs == [("Hello.", "Bonjour."), ("Good night.", "Bonne nuit.")]
    assert bad.counts == {"empty_side": 2} and bad.examples == {"empty_side": [2, 4]}
    write(tmp_path, "train.fr", "Bonjour.\nRien.\n")
    with pytest.raises(UserError, match=r"not line-aligned: .*train.en goes on at line 3"):
        read_parallel(src, tgt)


def test_missing_file_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        read_tsv(tmp_path / "fra.txt")
    assert str(tmp_path / "fra.txt") in str(info.value) and "\n" not in str(info.value)
    write(tmp_path, "newstest2014.en", "Hello.\n")
    with pytest.raises(DataNotFoundError, match=r"newstest2014\.fr: not found"):
        read_parallel(tmp_path / "newstest2014.en", tmp_path / "newstest2014.fr")
    with pytest.raises(DataNotFoundError, match=r"fra\.txt: not found"):
        TranslationData(_cfg(tmp_path, tmp_path), torch.device("cpu"))
    with pytest.raises(DataNotFoundError, match="no such folder"):
        TranslationData(_cfg(tmp_path, tmp_path / "nowhere"), torch.device("cpu"))


def test_not_utf8_is_one_line(tmp_path):
    (tmp_path / "fra.txt").write_bytes(b"Go.\tVa !\nCaf\xe9\tCaf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_tsv(tmp_path / "fra.txt")


# ---------------------------------------------------------------- the split
def test_hash_split_keeps_every_translation_of_a_sentence_in_one_split_whatever_the_order():
    rng = random.Random(1)
    english = [f"Sentence number {i}." for i in range(400)]
    keys = [rng.choice(english) for _ in range(2000)]
    keys += [k.upper() + "  " for k in keys[:50]]  # the same sentences, other case and spacing
    train, dev, test = hash_split(keys, test_size=150, dev_size=100)
    assert sorted(train + dev + test) == list(range(len(keys)))
    sides = {}
    for name, index in (("train", train), ("dev", dev), ("test", test)):
        for i in index:
            assert sides.setdefault(split_key(keys[i]), name) == name
    assert 150 <= len(test) < 150 + 20 and 100 <= len(dev) < 100 + 20
    # the split depends on the sentences, not on the file's order
    perm = list(range(len(keys)))
    rng.shuffle(perm)
    _, _, test2 = hash_split([keys[i] for i in perm], test_size=150, dev_size=100)
    assert sorted(keys[perm[i]] for i in test2) == sorted(keys[i] for i in test)


# ---------------------------------------------------------------- sub-words
def test_bpe_is_cached_by_its_inputs_and_round_trips_text(tmp_path):
    texts = [t for pair in SENTENCES for t in pair] * 5
    tok, path, hit = cached_bpe(texts, 100, 1, tmp_path)
    assert not hit and path.parent == tmp_path and path.is_file()
    tok2, path2, hit2 = cached_bpe(texts, 100, 1, tmp_path)
    assert hit2 and path2 == path and tok2.get_vocab() == tok.get_vocab()
    _, path3, hit3 = cached_bpe(texts, 90, 1, tmp_path)  # another setting: another file
    assert not hit3 and path3 != path
    _, path4, hit4 = cached_bpe(texts + ["Nouveau."], 100, 1, tmp_path)  # other text: another file
    assert not hit4 and path4 not in (path, path3)
    assert [tok.token_to_id(t) for t in mt.SPECIAL_TOKENS] == [0, 1, 2, 3]
    for text in ("J'ai froid.", "Va !", "Tom est ici."):
        ids = mt.encode(tok, [text])[0]
        assert ids[-1] == EOS_ID and mt.decode(tok, ids) == text


def test_data_records_split_bpe_and_malformed_lines(tmp_path):
    write(tmp_path, "fra.txt", "a line without a tab\n" + _corpus())
    data = TranslationData(_cfg(tmp_path, tmp_path, test_size=20, dev_size=10), torch.device("cpu"))
    d = data.details
    assert d["malformed_lines"]["total"] == 1 and d["malformed_lines"]["fra.txt"]["missing_column"]["lines"] == 1
    assert d["split"]["test_pairs"] == data.num_eval >= 20 and d["split"]["dev_pairs"] >= 10
    assert d["split"]["train_pairs"] + d["split"]["dev_pairs"] + d["split"]["test_pairs"] == 300
    assert not {s for s in data.train.sources} & {s for s in data.test.sources}
    assert d["bpe"]["trained_on"] == "training split, both sides" and not d["bpe"]["cache_hit"]
    again = TranslationData(_cfg(tmp_path, tmp_path, test_size=20, dev_size=10), torch.device("cpu"))
    assert again.details["bpe"]["cache_hit"]
    json.dumps(d)  # goes into result.json as is


def test_plain_format_reads_named_splits(tmp_path):
    for split, n in (("train", 40), ("newstest2013", 5), ("newstest2014", 6)):
        pairs = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
        write(tmp_path, f"{split}.en", "".join(s + "\n" for s, _ in pairs))
        write(tmp_path, f"{split}.fr", "".join(t + "\n" for _, t in pairs))
    data = TranslationData(_cfg(tmp_path, tmp_path, name="wmt2014_en_fr", format="plain"), torch.device("cpu"))
    assert (data.num_train, data.num_eval, len(data.dev)) == (40, 6, 5)
    assert data.details["split"]["test"] == "newstest2014" and data.name == "wmt2014_en_fr"


# ---------------------------------------------------------------- the model
def test_transformer_base_has_the_papers_size():
    """Vaswani et al. 2017 table 3 (base): 6+6 layers, d_model 512, 8 heads, FFN 2048, shared embeddings.

    Per encoder layer 4 x 512^2 + 4 x 512 (attention) + 2 x 512 x 2048 + 2048 + 512 (FFN) + 2 x 1024
    (norms) = 3,152,384; per decoder layer one more attention and norm: 4,204,032; two final norms
    2,048; plus the shared 37,000 x 512 embedding (the paper's En-De vocabulary): 63,084,544, the
    "about 63M" of the paper's 65M with its vocabulary.
    """
    model = build_model("transformer", scale=1.0, vocab_size=37000)
    layers = 6 * 3_152_384 + 6 * 4_204_032 + 2_048
    assert sum(p.numel() for p in model.parameters()) == layers + 37000 * 512 == 63_084_544
    assert (model.d_model, model.heads, len(model.encoder), len(model.decoder)) == (512, 8, 6, 6)
    assert model.decoder[0].ffn[0].out_features == 2048
    assert scaled_dims(0.25) == (128, 2, 2) and scaled_dims(0.5) == (256, 4, 3) and scaled_dims(0.125, 32) == (32, 1, 1)


def test_bad_architecture_knob_is_a_value_error():
    with pytest.raises(ValueError, match="encoder_layers=0"):
        build_model("transformer", scale=0.25, vocab_size=100, encoder_layers=0)


def _reference_greedy(model: nn.Module, src: torch.Tensor, max_len: int) -> list[int]:
    """Greedy decoding of one unpadded sentence the slow way: the whole prefix through forward()."""
    out = [BOS_ID]
    for _ in range(max_len):
        nxt = int(model(src.unsqueeze(0), torch.tensor([out]))[0, -1].argmax())
        if nxt == EOS_ID:
            break
        out.append(nxt)
    return out[1:]


@pytest.mark.parametrize("pre_norm", [True, False])
def test_batched_cached_greedy_decoding_equals_the_step_by_step_reference(pre_norm):
    torch.manual_seed(0)
    model = build_model("transformer", scale=0.25, vocab_size=60, head_dim=16, pre_norm=pre_norm).double().eval()
    with torch.no_grad():
        model.embed.weight.mul_(8)  # sharper logits, so argmax ties cannot occur
    lengths = [7, 3, 5, 1]
    rows = [[4 + (7 * i + 3 * j) % 50 for j in range(n - 1)] + [EOS_ID] for i, n in enumerate(lengths)]
    src = torch.zeros(len(rows), 8, dtype=torch.long)
    for i, row in enumerate(rows):
        src[i, : len(row)] = torch.tensor(row)
    limits = [9, 4, 6, 2]
    hyps, steps = greedy_decode(model, src, limits)
    assert steps <= max(limits)
    for i, row in enumerate(rows):
        expected = _reference_greedy(model, torch.tensor(row), limits[i])
        assert hyps[i] == [t for t in expected if t != 0][: limits[i]]
    assert any(len(h) > 1 for h in hyps)


def test_decoder_step_flops_are_affine_in_the_position_and_counted_fully():
    model = build_model("transformer", scale=0.125, vocab_size=50).eval()
    src = torch.randint(4, 50, (3, 8))
    flops = DecodeFlops()
    assert flops.count_step(model, src, 4) == flops.step_macs(model, src, 4)
    assert flops.steps_macs(model, src, 3) == sum(flops.count_step(model, src, t) for t in range(3))
    assert flops.encode_macs(model, src) > 0 and flops.unsupported_ops == {}
    assert len(flops.step_cache) == 1 and len(flops.encode_cache) == 1


def test_model_flops_counters_agree():
    from harness.measure.flops import count_forward_macs, forward_agreement

    model = build_model("transformer", scale=0.25, vocab_size=500)
    src, tgt = torch.randint(4, 500, (4, 16)), torch.randint(4, 500, (4, 8))
    src[0, 10:] = 0
    assert count_forward_macs(model, (src, tgt), 4).unsupported_ops == {}
    assert 1.0 <= forward_agreement(model, (src, tgt)) <= 1.05


# ---------------------------------------------------------------- metric and files
class Echo(nn.Module):
    """A stand-in translation model that copies its source, token by token."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.zeros(()))

    def encode(self, src):
        return (src != 0)[:, None, None, :], [src.unsqueeze(1).unsqueeze(-1).float()]

    def empty_cache(self, batch, device, dtype=torch.float32):
        return [torch.zeros(batch, 1, 0, 1, device=device, dtype=dtype)]

    def decode_step(self, tokens, mask, cross, cache):
        t = cache[0].shape[2]
        src = cross[0][:, 0, :, 0].long()
        nxt = src[:, t] if t < src.shape[1] else torch.full_like(src[:, 0], EOS_ID)
        nxt = torch.where(nxt == 0, torch.full_like(nxt, EOS_ID), nxt)
        logits = nn.functional.one_hot(nxt, self.vocab_size).float() + self.weight
        return logits, [torch.cat([cache[0], tokens.unsqueeze(1).unsqueeze(-1).float()], dim=2)]


def test_written_files_rescore_to_the_reported_bleu(tmp_path):
    """The target is the source with a few words changed: an echo model's BLEU is neither 0 nor 100,
    and ``sacrebleu references.txt < hypotheses.txt`` gives the same score."""
    lines = []
    for i, (src, _) in enumerate(SENTENCES * 30):
        tgt = src.replace("cold", "warm") if i % 3 else src
        lines.append(f"{src} {i % 7}.\t{tgt} {i % 7}.\n")
    write(tmp_path, "fra.txt", "".join(lines))
    cfg = _cfg(tmp_path, tmp_path, test_size=40, dev_size=10)
    workload = Translation(cfg, torch.device("cpu"))
    data = workload.build_data()
    evaluation = workload.evaluate(Echo(data.vocab_size), data)
    bleu = evaluation.metrics["bleu"]
    assert 5 < bleu < 100 and 0 < evaluation.metrics["chrf"] <= 100
    assert evaluation.details["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert evaluation.flops > 0 and "greedy" in evaluation.flops_method
    for name in Translation.prediction_files:
        write(tmp_path, name, evaluation.files[name])
    hyps = (tmp_path / "hypotheses.txt").read_text(encoding="utf-8").splitlines()
    assert hyps == (tmp_path / "sources.txt").read_text(encoding="utf-8").splitlines()  # the echo
    assert len(hyps) == data.num_eval == len((tmp_path / "references.txt").read_text().splitlines())
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "references.txt"), "-b", "-w", "4"],
                         input=(tmp_path / "hypotheses.txt").read_text(encoding="utf-8"),
                         capture_output=True, text=True, check=True, encoding="utf-8").stdout
    assert float(out.strip()) == pytest.approx(bleu, abs=0.01)
    assert workload.error_from_metric(bleu) == pytest.approx(1 - bleu / 100)


def test_bleu_chrf_and_lines_file():
    bleu, chrf, sig, _ = bleu_chrf(["Il fait froid."], ["Il fait froid."])
    assert bleu == pytest.approx(100) and chrf == pytest.approx(100) and "tok:13a" in sig
    assert lines_file(["a", "b\nc", ""]) == "a\nb c\n\n"


# ---------------------------------------------------------------- the real data
def test_tatoeba_reads_whole_and_splits_by_english_sentence(shared_data):
    path = shared_data / "tatoeba-eng-fra" / "fra.txt"
    pairs, keys, bad = read_tsv(path)
    assert len(pairs) == 76_036 and bad.total == 0
    train, dev, test = hash_split(keys, 2000, 2000)
    assert 2000 <= len(test) < 2100 and 2000 <= len(dev) < 2100
    held_out = {split_key(keys[i]) for i in test + dev}
    assert not held_out & {split_key(keys[i]) for i in train}
    assert not {split_key(keys[i]) for i in test} & {split_key(keys[i]) for i in dev}


def test_tiny_run_on_tatoeba_writes_rescorable_files(tmp_path, compose_workload):
    from harness.runner import run

    cfg = compose_workload(tmp_path, "translation", "measure.codecarbon=false", "trainer.max_steps=4")
    r = run(cfg, tmp_path / "run", ["workload=translation", "preset=tiny"])
    assert r["status"] == "ok", r["failure_reason"]
    assert (r["benchmark"], r["dataset"], r["metric_name"]) == ("wmt2014_en_fr", "tatoeba_en_fr", "bleu")
    assert r["dataset_details"]["split"]["test_pairs"] >= 2000 and r["eval_samples"] == 50
    assert r["metric_details"]["bleu_signature"].startswith("nrefs:1|case:mixed") and r["eval_flops"] > 0
    assert r["eval_flops_method"].startswith("greedy decoding")
    assert r["dataset_details"]["bpe"]["cache_file"] is None  # the tiny preset writes no cache
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "run" / "references.txt"), "-b", "-w", "4"],
                         input=(tmp_path / "run" / "hypotheses.txt").read_text(encoding="utf-8"),
                         capture_output=True, text=True, check=True, encoding="utf-8").stdout
    assert float(out.strip()) == pytest.approx(r["metric_value"], abs=0.01)


def test_wmt_data_config_names_itself_and_needs_a_root(tmp_path, compose_workload):
    from harness.runner import run

    for split, n in (("train", 60), ("newstest2013", 5), ("newstest2014", 8)):
        pairs = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
        write(tmp_path, f"{split}.en", "".join(s + "\n" for s, _ in pairs))
        write(tmp_path, f"{split}.fr", "".join(t + "\n" for _, t in pairs))
    cfg = compose_workload(tmp_path, "translation", "data=wmt2014_en_fr", f"data.root={tmp_path}",
                           "measure.codecarbon=false", "trainer.max_steps=3", "data.train_subset=null")
    r = run(cfg, tmp_path / "run", [])
    assert r["status"] == "ok", r["failure_reason"]
    assert (r["dataset"], r["benchmark"], r["eval_samples"]) == ("wmt2014_en_fr", "wmt2014_en_fr", 8)
