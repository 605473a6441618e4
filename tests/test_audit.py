"""The claims audit: verdicts, counts of real models, chip peaks, bad input, built-in sets, measured mode."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.audit import verdicts as v
from harness.audit.claims import ClaimError, read_claims
from harness.audit.config import AuditConfig
from harness.audit.hardware import UnknownChip, chip_peak
from harness.audit.pipeline import run
from harness.errors import UserError

REPO = Path(__file__).resolve().parents[1]
HEADER = ("claim_id,source,model,model_args,input,claimed_params,claimed_fwd_flops,claimed_fwd_unit,epochs,"
          "dataset_size,claimed_train_flops,hardware,num_chips,train_hours,precision,batch_size")


def _csv(tmp_path: Path, *rows: str, name: str = "claims.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join((HEADER, *rows)) + "\n")
    return path


def _cfg(tmp_path: Path, claims, literature_root=None, **kw):
    cfg = OmegaConf.structured(AuditConfig)
    cfg.claims, cfg.out_dir, cfg.progress, cfg.literature_root = str(claims), str(tmp_path / "out"), False, literature_root
    for k, val in kw.items():
        cfg[k] = val
    return cfg


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["claim_id"]: r for r in csv.DictReader(f)}


# ------------------------------------------------------------------ verdicts (pure)
@pytest.mark.parametrize("ratio, verdict", [(1.0, "match"), (1.049, "match"), (0.951, "match"), (1.06, "mismatch"),
                                            (0.5, "mac_convention"), (0.524, "mac_convention"), (0.53, "mismatch"),
                                            (2.0, "mismatch"), (None, "unknown")])
def test_fwd_verdict_thresholds(ratio, verdict):
    assert v.fwd_verdict(ratio) == verdict


def test_train_verdict_forward_only_and_utilisation_thresholds():
    assert v.train_verdict(1 / 3) == "forward_only" and v.train_verdict(0.349) == "forward_only"
    assert v.train_verdict(0.351) == "mismatch" and v.train_verdict(0.49) == "mac_convention"
    assert v.utilisation_verdict(1.0001) == "impossible" and v.utilisation_verdict(1.0) == "plausible"
    assert v.utilisation_verdict(0.0499) == "implausibly_low" and v.utilisation_verdict(0.05) == "plausible"
    assert v.utilisation_verdict(None) == "unknown"
    # a claim stated in MACs is doubled first: half the count is then not the MAC convention again
    assert v.fwd_verdict(0.5, "MAC") == "mismatch"


# ------------------------------------------------------------------ chips
def test_chip_peaks_follow_the_era_rule_and_give_ambiguity_the_benefit_of_the_doubt():
    v100 = chip_peak("V100", None, None)
    assert v100.precision == "fp32" and v100.flops_per_s == 15.7e12  # SXM2 beats PCIe's 14
    assert "2 variants" in v100.note
    assert chip_peak("V100", "fp16", None).flops_per_s == 125e12
    a100 = chip_peak("NVIDIA A100 SXM4 80GB", None, None)
    assert a100.precision == "bf16" and a100.flops_per_s == 312e12
    assert chip_peak("Cloud TPU v3", None, None).flops_per_s == 420e12  # a 4-chip board
    with pytest.raises(UnknownChip, match="'Flux Capacitor 9000'"):
        chip_peak("Flux Capacitor 9000", None, None)


# ------------------------------------------------------------------ the cases, counted for real
@pytest.fixture(scope="module")
def done_when(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    path = _csv(tmp,
                "r50_mac,He et al. 2016,torchvision:resnet50,,,,4.1e9,,,,,,,,,",
                "r50_flop,,torchvision:resnet50,,,,8.2e9,,,,,,,,,",
                "r18_10g,,torchvision:resnet18,,,,10e9,,,,,,,,,",
                "bert_base,Devlin et al. 2019,transformers:BertConfig,,seq=128,110e6,,,,,,,,,,",
                "r50_8v100_1h,,torchvision:resnet50,,,,,,90,1281167,,V100,8,1,,",
                "r50_fwd_only,,torchvision:resnet50,,,,,,90,1281167,9.5e17,,,,,")
    out = run(_cfg(tmp, path))
    return out, _rows(tmp / "out" / "audit.csv"), tmp / "out"


def test_resnet50_claims_in_macs_and_flops(done_when):
    _, rows, _ = done_when
    assert rows["r50_mac"]["fwd_verdict"] == "mac_convention"
    assert rows["r50_flop"]["fwd_verdict"] == "match"
    # fvcore: 4.12 GMACs for torchvision's ResNet-50 at 224 x 224; FlopCounterMode within 1% of it
    counted = float(rows["r50_flop"]["counted_fwd_flops"])
    assert 8.1e9 < counted < 8.3e9
    assert abs(float(rows["r50_flop"]["counted_fwd_flops_fcm"]) / counted - 1) < 0.01
    assert int(rows["r50_mac"]["counted_params"]) == 25_557_032


def test_resnet18_at_10_gflops_is_a_mismatch(done_when):
    _, rows, _ = done_when
    assert rows["r18_10g"]["fwd_verdict"] == "mismatch"
    assert float(rows["r18_10g"]["fwd_flops_ratio"]) == pytest.approx(10e9 / float(rows["r18_10g"]["counted_fwd_flops"]))


def test_bert_base_parameters(done_when):
    _, rows, _ = done_when
    assert int(rows["bert_base"]["counted_params"]) == 109_482_240  # BertModel with its pooler, 30,522 tokens
    assert abs(float(rows["bert_base"]["params_ratio"]) - 1.0) < 0.01
    # 6ND beside 3 x forward: no training samples given, so neither is computed
    assert rows["bert_base"]["counted_train_flops_6nd"] == ""


def test_imagenet_resnet50_in_an_hour_on_8_v100s_is_impossible(done_when):
    _, rows, _ = done_when
    row = rows["r50_8v100_1h"]
    # 3 x 8.23e9 x 90 x 1,281,167 = 2.85e18 FLOP against 8 x 15.7e12 x 3600 = 4.52e17
    assert float(row["counted_train_flops"]) == pytest.approx(3 * float(row["counted_fwd_flops"]) * 90 * 1281167)
    assert float(row["hardware_time_flops"]) == pytest.approx(8 * 15.7e12 * 3600)
    assert row["utilisation_verdict"] == "impossible" and row["utilisation_basis"] == "counted"
    assert row["precision"] == "fp32" and "fp16 peak it is 79%" in row["notes"]


def test_training_claim_of_one_forward_per_sample(done_when):
    _, rows, _ = done_when
    # counted 3 x 8.23e9 x 1.153e8 = 2.85e18; 9.5e17 is 0.334 of it: one forward per sample
    assert rows["r50_fwd_only"]["train_verdict"] == "forward_only"


def test_outputs_and_summary(done_when):
    out, _, folder = done_when
    assert {"audit.csv", "report.html"} <= {p.name for p in folder.iterdir()}
    assert (folder / "figures" / "claimed_vs_counted.png").stat().st_size > 1000
    html = (folder / "report.html").read_text()
    assert "Flagged claims" in html and "r50_8v100_1h" in html
    assert any("r50_mac" in line and "mac_convention" in line for line in out.summary)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("row, column, what", [
    ("bad_builder,,torchvision:resnet5000,,,,,,,,,,,,,", "model", "no builder 'resnet5000'"),
    ("bad_json,,torchvision:resnet18,{depth: 50},,,,,,,,,,,,", "model_args", "not valid JSON"),
    ("negative,,torchvision:resnet18,,,-5,,,,,,,,,,", "claimed_params", "must be positive"),
    ("zero,,torchvision:resnet18,,,,0,,,,,,,,,", "claimed_fwd_flops", "never 0"),
    ("bad_kind,,keras:resnet18,,,,,,,,,,,,,", "model", "not a model"),
    ("bad_input,,torchvision:resnet18,,224x224,,,,,,,,,,,", "input", "not an input"),
    ("bad_unit,,torchvision:resnet18,,,,1e9,GFLOP,,,,,,,,", "claimed_fwd_unit", "valid: FLOP, MAC"),
    ("bad_chip,,torchvision:alexnet,,,,,,,,,Flux Capacitor 9000,8,1,,", "hardware", "no peak"),
])
def test_bad_input_is_one_line_naming_row_and_column(tmp_path, row, column, what):
    path = _csv(tmp_path, row)
    with pytest.raises(UserError) as err:
        run(_cfg(tmp_path, path))
    message = str(err.value)
    claim_id = row.split(",")[0]
    assert "\n" not in message and f"'{claim_id}'" in message and f"'{column}'" in message and what in message


def test_on_error_skip_reports_the_row_and_goes_on(tmp_path):
    path = _csv(tmp_path, "ok,,torchvision:alexnet,,,,1.4e9,,,,,,,,,",
                "bad_json,,torchvision:resnet18,{oops,,,,,,,,,,,,",
                "bad_builder,,torchvision:nonet,,,,,,,,,,,,,",
                "ok2,,torchvision:alexnet,,,,0.7e9,MAC,,,,,,,,")
    out = run(_cfg(tmp_path, path, on_error="skip"))
    assert [r["claim_id"] for r in out.rows] == ["ok", "ok2"]
    assert [s.claim_id for s in out.skipped] == ["bad_json", "bad_builder"]
    assert "column 'model_args'" in out.skipped[0].reason and "line 3" in out.skipped[0].reason
    assert out.rows[1]["fwd_verdict"] == "match"  # 0.7 GMAC = 1.4 GFLOP of AlexNet's 1.43
    assert any("skipped 2 row(s)" in line for line in out.summary)


def test_missing_columns_and_duplicates(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("claim_id,flops\nx,1\n")
    with pytest.raises(ClaimError, match="missing column.*model"):
        read_claims(path)
    path = _csv(tmp_path, "a,,torchvision:alexnet,,,,,,,,,,,,,", "a,,torchvision:alexnet,,,,,,,,,,,,,")
    with pytest.raises(ClaimError, match="duplicate of the row at line 2"):
        read_claims(path)


def test_command_line_error_exits_2_with_one_line(tmp_path):
    path = _csv(tmp_path, "bad_json,,torchvision:resnet18,{oops,,,,,,,,,,,,")
    proc = subprocess.run([sys.executable, "-m", "harness.audit", f"claims={path}", f"out_dir={tmp_path / 'o'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "column 'model_args'" in proc.stderr


# ------------------------------------------------------------------ built-in sets
def test_epoch_set_runs_offline_and_flags_claims(tmp_path, shared_data):
    out = run(_cfg(tmp_path, "epoch", literature_root=str(shared_data / "literature")))
    verdicts = {r["utilisation_verdict"] for r in out.rows}
    assert len(out.rows) > 200 and {"impossible", "plausible"} <= verdicts
    for r in out.rows:
        if r["implied_utilisation"] is not None:
            assert r["implied_utilisation"] == pytest.approx(
                r["claimed_train_flops"] / (r["num_chips"] * r["hardware_peak_flops_per_s"] * r["train_hours"] * 3600))
    assert (tmp_path / "out" / "figures" / "utilisation_by_year.png").is_file()


def test_thompson_set_maps_named_rows(shared_data):
    from harness.audit.builtin import thompson_claims

    claims = {c.claim_id: c for c in thompson_claims(shared_data / "literature")}
    alexnet = claims["image-classification-on-imagenet:212:AlexNet"]
    assert alexnet.model == "torchvision:alexnet" and alexnet.claimed_fwd_flops == 7e8
    assert alexnet.claimed_fwd_unit == "MAC" and alexnet.samples == 100 * 1280000
    assert alexnet.hardware == "GeForce GTX 580" and alexnet.num_chips == 2
    assert alexnet.train_hours == pytest.approx(5.18e5 / 3600)
    assert any(c.model == "transformers:BertConfig" for c in claims.values())


# ------------------------------------------------------------------ measured mode
def test_measured_mode_projects_the_claim(tmp_path):
    path = _csv(tmp_path, "tiny,,torchvision:resnet18,,3x32x32,,,,10,1000,,V100,1,1,,4")
    out = run(_cfg(tmp_path, path, measure=True, device="cpu", steps=2, warmup_steps=1, codecarbon=False))
    row = out.rows[0]
    assert row["measured_status"] == "ok" and row["measured_batch_size"] == 4
    fwd = row["counted_fwd_flops"]
    assert row["measured_flops_per_s"] == pytest.approx(3 * fwd * 4 * 2 / (row["measured_step_time_s"] * 2))
    assert row["projected_train_time_s"] == pytest.approx(row["counted_train_flops"] / row["measured_flops_per_s"])
    assert row["projected_energy_j"] is None  # codecarbon off: no power, so no energy, never 0
    assert row["measured_contended"] in (True, False) and 0 <= row["measured_other_cpu_share"] <= 1


def test_measured_mode_reports_out_of_memory(tmp_path, monkeypatch):
    import harness.audit.measured as measured

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(measured, "build", oom)
    path = _csv(tmp_path, "big,,torchvision:alexnet,,,,,,,,,,,,,")
    out = run(_cfg(tmp_path, path, measure=True, device="cpu", codecarbon=False))
    assert out.rows[0]["measured_status"].startswith("does not fit in memory")


def test_claims_is_required(tmp_path):
    with pytest.raises(UserError, match="claims= is required"):
        cfg = _cfg(tmp_path, "x")
        cfg.claims = None
        run(cfg)


def test_epoch_chip_table_eras(shared_data):
    from harness.audit.hardware import EpochChips

    epoch = EpochChips(shared_data / "literature" / "epoch" / "epoch_chip_dataset.csv")
    tpu = chip_peak("Google TPU v2", None, epoch, prefer_epoch=True)
    assert (tpu.precision, tpu.flops_per_s) == ("bf16", 45e12)  # per chip; its 3 TFLOP/s FP32 figure is not the MXU
    assert epoch.peak("NVIDIA Tesla V100 SXM2 16 GB", "bf16") is None  # Volta's tensor cores are FP16 only
    assert epoch.peak("NVIDIA Tesla V100 SXM2 16 GB", "fp16").flops_per_s == 125e12
    assert chip_peak("Quadro GP100", None, epoch).source.startswith("Epoch AI chip dataset")  # not in peaks.py
