"""ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) with a width knob.

``scale`` multiplies every stage width (64, 128, 256, 512 in the paper). At ``scale=1.0`` the
network is layer-for-layer the published one in its torchvision form ("ResNet v1.5": the
stride of a bottleneck sits on its 3x3 convolution, as in ``torchvision.models.resnet``), so
fvcore counts the same multiply-adds for both (ResNet-50 at 224 px: 4.09 G).

Two stems:
- ``imagenet``: 7x7/2 convolution and 3x3/2 max-pool, as published, for 224 px inputs;
- ``small``: one 3x3/1 convolution and no pool, the CIFAR-style stem (He et al. sec. 4.2) that
  keeps 28/32 px inputs from being shrunk to 7/8 px before the first stage.
``auto`` picks ``small`` for inputs of 64 px or less.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.registry import register_model

#: Stage widths and block counts from He et al. 2016, table 1.
BASE_WIDTHS = (64, 128, 256, 512)
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
SMALL_STEM_MAX_PX = 64


@dataclass
class ResNetConfig:
    """Architecture knobs of ``conf/harness/model/resnet.yaml`` (``scale`` is a top-level key)."""

    name: str = "resnet"
    depth: int = 18
    stem: str = "auto"  # auto | small | imagenet
    zero_init_residual: bool = False


def scaled(width: int, scale: float) -> int:
    """Channel count of a ``width``-channel layer at width multiplier ``scale`` (at least 1)."""
    return max(1, int(round(width * scale)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: stride here
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """Projection shortcut (option B of He et al.) where the shape changes, else identity."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    """ResNet with stage widths ``BASE_WIDTHS x scale``."""

    def __init__(
        self,
        depth: int = 50,
        scale: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"model.depth={depth} is invalid; valid depths: {sorted(DEPTHS)}")
        if stem not in ("small", "imagenet"):
            raise ValueError(f"model.stem={stem!r} is invalid; valid stems: auto, small, imagenet")
        kind, counts = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        widths = [scaled(w, scale) for w in BASE_WIDTHS]
        stem_ch = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem_ch, 7, 2, 3, bias=False),
                nn.BatchNorm2d(stem_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem_ch, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem_ch),
                nn.ReLU(inplace=True),
            )
        stages, in_ch = [], stem_ch
        for i, (width, count) in enumerate(zip(widths, counts)):
            blocks = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_ch, width, stride))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # Same initialisation as torchvision (He et al. 2015 "Delving deep", fan_out).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # Goyal et al. 2017, "Accurate, Large Minibatch SGD", sec. 5.1
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2
                    nn.init.zeros_(last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet", ResNetConfig, task="image_classification")
def build_resnet(
    scale: float = 1.0,
    depth: int = 50,
    stem: str = "auto",
    zero_init_residual: bool = False,
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 224,
) -> ResNet:
    """ResNet-``depth`` at width ``scale``; ``scale=1.0, depth=50, stem='imagenet'`` is ResNet-50.

    ``num_classes``, ``in_channels`` and ``image_size`` come from the dataset, not the model config.
    """
    if stem == "auto":
        stem = "small" if image_size <= SMALL_STEM_MAX_PX else "imagenet"
    return ResNet(depth, scale, num_classes, in_channels, stem, zero_init_residual)
