"""models/: the registry and the ResNet family."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from models import build_model
from models.resnet import BASE_WIDTHS, DEPTHS


def fvcore_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    analysis = FlopCountAnalysis(model.eval(), x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total()


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet50_at_scale_one_is_torchvision_resnet50():
    ours = build_model("resnet", scale=1.0, depth=50, stem="imagenet")
    theirs = torchvision.models.resnet50()  # architecture only: no weights are loaded
    x = torch.randn(1, 3, 224, 224)
    ours_macs, theirs_macs = fvcore_macs(ours, x), fvcore_macs(theirs, x)
    assert ours_macs == theirs_macs
    assert 4.05e9 < ours_macs < 4.15e9  # the published "4.1 GFLOPs" (multiply-adds) of ResNet-50
    assert num_params(ours) == num_params(theirs) == 25_557_032


@pytest.mark.parametrize("depth, torchvision_fn", [(18, torchvision.models.resnet18), (34, torchvision.models.resnet34)])
def test_basic_block_depths_match_torchvision(depth, torchvision_fn):
    ours = build_model("resnet", scale=1.0, depth=depth, image_size=224)
    assert num_params(ours) == num_params(torchvision_fn())


def test_auto_stem_keeps_small_images_large():
    small = build_model("resnet", scale=0.25, depth=18, in_channels=1, num_classes=10, image_size=28)
    first = small.stem[0]
    assert (first.kernel_size, first.stride, first.in_channels) == ((3, 3), (1, 1), 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in small.stem)
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    big = build_model("resnet", scale=0.25, depth=18, image_size=224)
    assert big.stem[0].kernel_size == (7, 7)


def test_scale_multiplies_stage_widths():
    model = build_model("resnet", scale=0.25, depth=50, image_size=224)
    widths = [stage[0].conv1.out_channels for stage in model.stages]
    assert widths == [w // 4 for w in BASE_WIDTHS]
    assert model.fc.in_features == 512 // 4 * 4  # bottleneck expansion 4


def test_compute_falls_roughly_quadratically_with_width():
    x = torch.randn(1, 3, 32, 32)
    full = fvcore_macs(build_model("resnet", scale=1.0, depth=18, image_size=32), x)
    half = fvcore_macs(build_model("resnet", scale=0.5, depth=18, image_size=32), x)
    assert 3.5 < full / half < 4.1  # convs dominate, each ~ width^2


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="known models: .*resnet"):
        build_model("resnte")


@pytest.mark.parametrize("scale", [0, -0.5, float("nan")])
def test_non_positive_scale_is_rejected(scale):
    with pytest.raises(ValueError, match="scale"):
        build_model("resnet", scale=scale)


def test_unknown_arch_option_is_rejected():
    with pytest.raises(ValueError, match="no option 'detph'"):
        build_model("resnet", scale=1.0, detph=50)


def test_invalid_depth_lists_valid_depths():
    with pytest.raises(ValueError, match=str(sorted(DEPTHS))):
        build_model("resnet", scale=1.0, depth=20)


def test_importing_the_harness_imports_no_heavy_optional_module():
    """Start-up (issue 16): torchvision's detection/ops modules import torch._dynamo (~1.2 s on the
    2-core CPU); only a detection run needs them, so the registry and the runner import them lazily."""
    import subprocess
    import sys

    code = ("import sys, harness.config, harness.runner, harness.__main__, models; "
            "print(' '.join(m for m in ('torchvision', 'torch._dynamo', 'fvcore', 'codecarbon', 'pandas', "
            "'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
