"""One full tiny run through Hydra's compose API into tmp_path, and the runner's outcomes."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from harness.errors import UserError
from harness.results import RESULT_FIELDS
from harness.runner import run
from harness.train_loop import eval_steps

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, compose_harness):
    tmp = tmp_path_factory.mktemp("run")
    cfg = compose_harness(tmp)
    result = run(cfg, tmp / "out", ["scale=0.125"])
    return tmp / "out", result


def test_every_schema_field_is_written(tiny_run):
    out, result = tiny_run
    on_disk = json.loads((out / "result.json").read_text())
    assert list(on_disk) == list(RESULT_FIELDS)
    assert on_disk == json.loads(json.dumps(result))


def test_identity_and_what_ran(tiny_run):
    _, r = tiny_run
    assert r["status"] == "ok" and r["failure_reason"] is None
    assert r["run_id"] and r["started_at"] and r["overrides"] == ["scale=0.125"]
    assert r["config"]["scale"] == 0.125 and r["config"]["model"]["depth"] == 18
    assert (r["workload"], r["benchmark"], r["model"], r["dataset"]) == ("image_classification", "imagenet", "resnet", "fashion_mnist")
    assert r["scale"] == 0.125 and r["seed"] == 0
    assert r["num_params"] == sum(p.numel() for p in __import__("models").build_model(
        "resnet", scale=0.125, depth=18, in_channels=1, num_classes=10, image_size=28).parameters())
    assert (r["device_type"], r["num_devices"], r["precision"]) == ("cpu", 1, "fp32")
    assert r["device_name"] and r["torch_version"] == torch.__version__
    assert r["cuda_version"] is None and r["driver_version"] is None  # nothing CUDA in use on a CPU run


def test_work_done(tiny_run):
    _, r = tiny_run
    assert r["train_steps"] == 10 and r["batch_size"] == 64
    assert r["train_samples"] == 640 and r["epochs"] == pytest.approx(1.0)
    assert r["eval_samples"] == 300 and r["num_evals"] == 2


def test_flops(tiny_run):
    _, r = tiny_run
    assert r["fwd_flops_per_sample"] == 2 * r["fwd_macs_per_sample"] > 0
    assert r["train_flops"] == pytest.approx(3 * r["fwd_flops_per_sample"] * r["train_samples"])
    assert r["eval_flops"] == pytest.approx(r["fwd_flops_per_sample"] * 300 * 2)
    assert r["flops_unsupported_ops"] == {}  # every arithmetic op has a handle (harness/measure/flop_handles.py)
    assert r["padding_fraction"] == 0.0 and r["flops_distinct_shapes"] == 1  # images: one shape, no padding
    assert 0.95 <= r["fwd_flops_counter_agreement"] <= 1.05
    # backward ~ 2x forward; the first conv skips its input gradient, BN/ReLU are not counted
    assert 0.9 < r["train_step_flops_ratio"] < 1.0
    assert r["train_step_flops_measured_per_sample"] == pytest.approx(r["train_step_flops_ratio"] * 3 * r["fwd_flops_per_sample"])


def test_time(tiny_run):
    _, r = tiny_run
    assert r["warmup_steps"] == 2
    for key in ("train_time_s", "eval_time_s", "data_time_s", "warmup_time_s", "wall_time_s"):
        assert r[key] is not None and r[key] >= 0, key
    assert r["train_time_s"] > 0 and r["eval_time_s"] > 0 and r["warmup_time_s"] > 0
    assert r["data_time_s"] < r["train_time_s"]
    assert r["train_time_s"] + r["eval_time_s"] + r["warmup_time_s"] < r["wall_time_s"]


def test_cpu_peak_is_derived_not_measured_and_burden_uses_it(tiny_run):
    _, r = tiny_run
    assert r["peak_dtype"] == "fp32"
    if r["peak_flops_per_s"] is None:  # a CPU the ISA table cannot derive: null with the reason
        assert r["peak_source"].startswith("null: ") and r["hardware_burden_flops"] is None
    else:
        assert r["peak_source"].startswith("derived: ") and "FLOP/cycle" in r["peak_source"]
        assert r["hardware_burden_flops"] == pytest.approx(r["peak_flops_per_s"] * r["train_time_s"])
    # no profile under tmp_path/hardware: no measured ceiling, and the note says why
    assert r["measured_peak_flops_per_s"] is None and r["mfu_measured"] is None
    assert r["measured_peak_note"]
    assert r["achieved_flops_per_s"] == pytest.approx(r["train_flops"] / r["train_time_s"])


def test_energy_and_co2(tiny_run):
    out, r = tiny_run
    assert r["energy_gpu_j"] is None and r["energy_gpu_method"] == "none"
    assert r["energy_cpu_method"] in ("rapl", "codecarbon_estimate")
    assert r["energy_ram_method"] in ("rapl", "codecarbon_estimate")
    assert r["energy_cpu_j"] > 0 and r["energy_ram_j"] > 0
    assert r["energy_total_j"] == pytest.approx(r["energy_cpu_j"] + r["energy_ram_j"])
    assert r["country_iso_code"] == "USA" and r["carbon_intensity_g_per_kwh"] > 0
    assert r["co2_kg"] == pytest.approx(r["energy_total_j"] / 3.6e6 * r["carbon_intensity_g_per_kwh"] / 1000)
    assert (out / "emissions.csv").is_file()


def test_quality_and_curve(tiny_run):
    out, r = tiny_run
    assert r["metric_name"] == "top1_accuracy"
    assert 0 <= r["metric_value"] <= 1 and r["error"] == pytest.approx(1 - r["metric_value"])
    with open(out / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["train_steps"]) for row in rows] == [5, 10]
    assert float(rows[-1]["metric_value"]) == r["metric_value"]
    assert float(rows[-1]["train_flops"]) == pytest.approx(r["train_flops"])
    assert float(rows[0]["energy_total_j"]) <= float(rows[1]["energy_total_j"])
    assert float(rows[0]["train_time_s"]) < float(rows[1]["train_time_s"]) == pytest.approx(r["train_time_s"])


def _cpu_profile(root, fp32_flops_per_s: float, *, quiet: bool = True, age_h: float = 0.0) -> None:
    import datetime as dt

    from kernels.device import device_name
    from kernels.profile import write_profile

    measured_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=age_h)
    write_profile({"device_name": device_name(torch.device("cpu")), "device_type": "cpu",
                   "num_threads": torch.get_num_threads(), "measured_at": measured_at.isoformat(),
                   "quiet": quiet, "quiet_reason": None if quiet else "other processes used 60% of the CPUs",
                   "achieved_flops_per_s": {"fp32": fp32_flops_per_s, "bf16": None},
                   "datasheet_flops_per_s": {}, "bandwidth_bytes_per_s": None}, root)


def test_a_quiet_matching_profile_feeds_mfu_measured_only(tmp_path, compose_harness):
    cfg = compose_harness(tmp_path, "measure.codecarbon=false", "trainer.num_evals=1")
    bare = run(cfg, tmp_path / "bare", [])
    _cpu_profile(tmp_path / "hardware", 1e11)
    r = run(cfg, tmp_path / "out", [])
    assert r["measured_peak_flops_per_s"] == 1e11 and "kernels" in r["measured_peak_source"]
    assert r["measured_peak_note"] is None
    assert r["mfu_measured"] == pytest.approx(r["achieved_flops_per_s"] / 1e11)
    # the burden's peak is the theoretical one whatever the profile says: a measured ceiling moves with load
    assert r["peak_flops_per_s"] == bare["peak_flops_per_s"] and r["peak_source"] == bare["peak_source"]
    assert r["energy_cpu_method"] == "none" and r["energy_total_j"] is None and r["co2_kg"] is None


@pytest.mark.parametrize("profile, why", [(dict(quiet=False), "quiet"), (dict(age_h=48.0), "old")])
def test_a_contended_or_stale_profile_is_ignored_with_the_reason(tmp_path, compose_harness, profile, why):
    _cpu_profile(tmp_path / "hardware", 1e11, **profile)
    cfg = compose_harness(tmp_path, "measure.codecarbon=false", "measure.count_flops=false", "trainer.num_evals=1")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "ok"
    assert r["measured_peak_flops_per_s"] is None and r["mfu_measured"] is None
    assert why in r["measured_peak_note"]


def test_nan_loss_is_recorded_as_diverged(tmp_path, compose_harness, monkeypatch):
    from harness.workloads.image_classification import ImageClassification

    real_loss = ImageClassification.loss
    calls = {"n": 0}

    def loss_that_explodes(self, model, batch):
        calls["n"] += 1
        total, count = real_loss(self, model, batch)
        return (total * float("nan") if calls["n"] > 4 else total), count

    monkeypatch.setattr(ImageClassification, "loss", loss_that_explodes)
    cfg = compose_harness(tmp_path, "measure.codecarbon=false", "measure.count_flops=false")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "diverged" and "NaN" in r["failure_reason"]
    assert r["metric_value"] is None and r["error"] is None
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "diverged"


def test_out_of_memory_is_recorded_as_oom(tmp_path, compose_harness, monkeypatch):
    from harness.workloads.image_classification import ImageClassification

    def oom(self, model, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ImageClassification, "loss", oom)
    cfg = compose_harness(tmp_path, "measure.codecarbon=false", "measure.count_flops=false")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "oom" and "out of memory" in r["failure_reason"]
    assert r["energy_gpu_method"] == "none" and r["energy_cpu_method"] == "none"  # methods recorded even on failure


def test_bad_values_fail_before_anything_is_written(tmp_path, compose_harness):
    for override, key in [("scale=0", "scale"), ("scale=-1", "scale"), ("trainer.precision=fp8", "trainer.precision"),
                          ("model.name=vgg", "model"), ("workload.name=segmentation", "workload"),
                          ("trainer.warmup_fraction=2", "trainer.warmup_fraction"), ("trainer.warmup_fraction=0", "trainer.warmup_fraction")]:
        cfg = compose_harness(tmp_path, override)
        with pytest.raises(UserError, match=key):
            run(cfg, tmp_path / "out", [override])
        assert not (tmp_path / "out").exists()


def test_eval_steps_spread_and_end_at_the_last_step():
    assert eval_steps(10, 2) == [5, 10]
    assert eval_steps(10, 1) == [10]
    assert eval_steps(3, 5) == [1, 2, 3]
    assert all(math.isfinite(s) for s in eval_steps(234, 4))


@pytest.mark.gpu
def test_cuda_run_meters_the_gpu_and_has_a_hardware_burden(tmp_path, compose_harness):
    cfg = compose_harness(tmp_path, "device=cuda", "measure.codecarbon=false")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "ok" and r["device_type"] == "cuda"
    assert r["cuda_version"] and r["driver_version"]
    assert r["energy_gpu_method"] in ("nvml_counter", "nvml_power_sampling") and r["energy_gpu_j"] > 0
    if r["peak_flops_per_s"] is not None:  # a GPU in the datasheet table
        assert r["hardware_burden_flops"] == pytest.approx(r["peak_flops_per_s"] * r["train_time_s"])
        assert 0 < r["mfu_theoretical"] < 1
