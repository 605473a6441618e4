"""Evaluation rewrites (harness/inference.py): the same outputs, fewer passes, the training model untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference import FOLD_METHOD, fold_batchnorm
from models import build_model


def _trained_like_resnet(channels_last: bool = False) -> nn.Module:
    """A tiny ResNet whose BatchNorms hold non-trivial running statistics and affine weights."""
    torch.manual_seed(0)
    model = build_model("resnet", scale=0.0625, depth=18, num_classes=10, in_channels=1, image_size=28)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from (0, 1)
            model(torch.randn(16, 1, 28, 28) * 3 + 1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def _num_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_resnet_computes_the_same_function_without_batchnorm(channels_last):
    model = _trained_like_resnet(channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 1, 28, 28)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    folded, how = fold_batchnorm(model, channels_last=channels_last)
    assert how == FOLD_METHOD
    assert _num_batchnorms(model) > 0 and _num_batchnorms(folded) == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    # the training model is left exactly as it was
    assert _num_batchnorms(model) == 20
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    if channels_last:
        convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_fold_refuses_a_model_in_training_mode():
    model = _trained_like_resnet().train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)


def test_models_without_batchnorm_or_untraceable_are_evaluated_as_they_are():
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    assert fold_batchnorm(plain) == (plain, None)

    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    branchy = Branchy().eval()
    assert fold_batchnorm(branchy) == (branchy, None)


def test_image_classification_reports_the_same_accuracy_folded_or_not(tmp_path, compose_harness):
    from harness.workload import build_workload

    scores = {}
    for fold in (True, False):
        cfg = compose_harness(tmp_path, "preset=tiny", f"workload.fold_batchnorm={str(fold).lower()}")
        workload = build_workload(cfg.workload.name, cfg, torch.device("cpu"))
        data = workload.build_data()
        torch.manual_seed(0)
        model = workload.build_model(data)
        model.train()
        with torch.no_grad():  # move the running statistics off their initial values
            for x, _ in data.train_batches(64, torch.Generator().manual_seed(0)):
                model(x)
        evaluation = workload.evaluate(model.eval(), data)
        scores[fold] = evaluation.metrics["top1_accuracy"]
        assert ("eval_model" in evaluation.details) is fold
    # rounding may flip a near-tie's argmax: at most one image of the evaluation set
    assert abs(scores[True] - scores[False]) <= 1 / data.num_eval + 1e-12
