"""harness.results: the schema is the contract, and writes are atomic."""
from __future__ import annotations

import json

import pytest

import common.atomic
from harness.results import RESULT_FIELDS, empty_result, write_result

DESIGN_FIELDS = """run_id started_at git_commit overrides config seed workload benchmark model scale dataset
num_params precision device_type device_name num_devices torch_version cuda_version driver_version
train_samples train_steps epochs batch_size fwd_macs_per_sample fwd_flops_per_sample flops_unsupported_ops
train_flops train_step_flops_measured_per_sample eval_flops train_time_s eval_time_s data_time_s wall_time_s
warmup_steps peak_flops_per_s peak_source measured_peak_flops_per_s hardware_burden_flops achieved_flops_per_s
energy_gpu_j energy_cpu_j energy_ram_j energy_total_j co2_kg carbon_intensity_g_per_kwh country_iso_code
metric_name metric_value error status failure_reason""".split()


def test_schema_has_every_design_field():
    assert set(DESIGN_FIELDS) <= set(RESULT_FIELDS)
    assert len(set(RESULT_FIELDS)) == len(RESULT_FIELDS)


def test_nan_is_written_as_null_never_as_a_number(tmp_path):
    r = empty_result()
    r.update(status="ok", energy_total_j=float("nan"), train_time_s=1.5)
    write_result(tmp_path / "result.json", r)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["energy_total_j"] is None and on_disk["train_time_s"] == 1.5


def test_keys_outside_the_schema_and_bad_status_are_rejected(tmp_path):
    with pytest.raises(KeyError):
        write_result(tmp_path / "r.json", {**empty_result(), "status": "ok", "energy_j": 1})
    with pytest.raises(ValueError):
        write_result(tmp_path / "r.json", {**empty_result(), "status": "done"})
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_result(path, {**empty_result(), "status": "ok"})
    before = path.read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common.atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_result(path, {**empty_result(), "status": "failed"})
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind
