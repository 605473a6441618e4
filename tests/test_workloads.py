"""The workload contract, checked on every registered workload through its tiny preset.

Each workload runs end to end through Hydra's compose API into ``tmp_path`` and must write a
valid result (its benchmark, every metric, FLOPs with no unsupported op, fvcore agreeing with
torch's FlopCounterMode within 5% on a training batch) and the prediction files it declares.
"""
from __future__ import annotations

import json

import pytest
import torch

from harness.errors import UserError
from harness.inference import FOLD_METHOD
from harness.results import RESULT_FIELDS
from harness.runner import run
from harness.workload import Evaluation, Workload, WorkloadConfig, register_workload, workload_names, workloads

NAMES = workload_names()


def test_every_workload_has_test_data_a_tiny_preset_and_a_config(workload_data_roots):
    from common.hydra_cli import CONF_DIR

    assert set(NAMES) >= {"image_classification", "ner"}
    for name in NAMES:
        assert name in workload_data_roots, f"add {name}'s tiny-preset data to tests/conftest.py"
        assert (CONF_DIR / "workload" / f"{name}.yaml").is_file()
        assert (CONF_DIR / "workload_preset" / f"{name}_tiny.yaml").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_tiny_preset_runs_end_to_end(name, tmp_path, compose_workload):
    cfg = compose_workload(tmp_path, name, "measure.codecarbon=false")
    r = run(cfg, tmp_path / "run", [f"workload={name}", "preset=tiny"])
    cls = workloads()[name]
    assert r["status"] == "ok", r["failure_reason"]
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert list(on_disk) == list(RESULT_FIELDS)
    assert (on_disk["workload"], on_disk["benchmark"], on_disk["metric_name"]) == (name, cls.benchmark, cls.metric_name)
    assert on_disk["metrics"][cls.metric_name] == on_disk["metric_value"]
    assert on_disk["error"] == pytest.approx(cls(cfg, torch.device("cpu")).error_from_metric(on_disk["metric_value"]))
    # FLOPs per batch as executed, every op counted, two counters agreeing
    assert on_disk["flops_unsupported_ops"] == {}
    assert 0.95 <= on_disk["fwd_flops_counter_agreement"] <= 1.05
    # a real forward+backward step counted by FlopCounterMode is near the paper's 3 x forward
    assert 0.6 < on_disk["train_step_flops_ratio"] < 1.2
    assert on_disk["train_flops"] > 0 and on_disk["flops_distinct_shapes"] >= 1
    assert 0.0 <= on_disk["padding_fraction"] < 1.0
    # predictions in the benchmark's format, named in the result
    for file in cls.prediction_files:
        assert (tmp_path / "run" / file).is_file() and file in on_disk["prediction_files"]


def test_model_of_another_workload_is_refused_before_anything_is_written(tmp_path, compose_workload):
    cfg = compose_workload(tmp_path, "ner", "model=resnet")
    with pytest.raises(UserError, match="model=resnet is a image_classification model, not a ner one; ner models: bilstm_crf"):
        run(cfg, tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def test_dataset_of_another_workload_is_refused(tmp_path, compose_workload):
    cfg = compose_workload(tmp_path, "ner", "data=fashion_mnist")
    with pytest.raises(UserError, match="data=fashion_mnist is not a ner dataset.*ner datasets: conll2003"):
        run(cfg, tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def test_training_step_weighs_a_padded_batch_by_its_real_items():
    """The loop trains on sum / count: padded positions, however large, change neither loss nor gradient."""
    import contextlib
    from types import SimpleNamespace

    from harness.train_loop import TrainLoop

    class Padded(SimpleNamespace):
        def loss(self, model, batch):
            per_position = model(batch).squeeze(-1)  # (4,): the last two positions are padding
            mask = torch.tensor([1.0, 1.0, 0.0, 0.0])
            return (per_position * mask).sum(), mask.sum()

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loop = SimpleNamespace(autocast=contextlib.nullcontext(), workload=Padded(), model=model, step_model=model, ddp=None,
                           opt=opt,
                           scaler=torch.amp.GradScaler("cuda", enabled=False), sched=None,
                           t=SimpleNamespace(grad_clip_norm=None))
    loss = TrainLoop._step(loop, torch.tensor([[1.0], [3.0], [100.0], [100.0]]), schedule=False)
    assert loss.item() == 2.0  # (1 + 3) / 2, not (1 + 3 + 200) / 4
    assert model.weight.grad.item() == 2.0


def test_registry_is_lazy_and_rejects_a_second_class_with_a_taken_name():
    import subprocess
    import sys

    code = ("import sys, harness.workload; "
            "print(any(m.startswith('harness.workloads.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

    class Clash(Workload):
        name = "ner"

    with pytest.raises(ValueError, match="registered twice"):
        register_workload(Clash)


def test_workload_config_must_subclass_the_base():
    class BadConfig(Workload):
        name = "bad_config_probe"
        config_class = dict

    with pytest.raises(TypeError, match="config_class must subclass WorkloadConfig"):
        register_workload(BadConfig)
    assert issubclass(workloads()["ner"].config_class, WorkloadConfig)


def test_evaluation_flops_details_and_dataset_details_reach_the_result(tmp_path, compose_workload, monkeypatch):
    """A workload that counts its own evaluation cost (decoding) and says how it scored: both are kept."""
    from harness.workloads.image_classification import ImageClassification

    real = ImageClassification.evaluate

    def evaluate(self, model, data):
        e = real(self, model, data)
        return Evaluation(e.metrics, details={"scorer": "top-1 v1"}, flops=1000.0, flops_method="counted per step")

    monkeypatch.setattr(ImageClassification, "evaluate", evaluate)
    cfg = compose_workload(tmp_path, "image_classification", "measure.codecarbon=false")
    r = run(cfg, tmp_path / "run", [])
    assert r["num_evals"] == 2 and r["eval_flops"] == 2000.0 and r["eval_flops_method"] == "counted per step"
    assert r["metric_details"] == {"scorer": "top-1 v1"}


def test_without_a_count_from_the_workload_eval_flops_is_the_per_sample_estimate(tmp_path, compose_workload):
    cfg = compose_workload(tmp_path, "image_classification", "measure.codecarbon=false")
    r = run(cfg, tmp_path / "run", [])
    assert r["eval_flops"] == pytest.approx(r["fwd_flops_per_sample"] * r["eval_samples"] * r["num_evals"])
    assert r["eval_flops_method"].startswith("fwd_flops_per_sample x eval_samples")
    # the only detail: evaluation ran the BatchNorm-folded copy of the model
    assert r["metric_details"] == {"eval_model": FOLD_METHOD} and r["dataset_details"] is None
