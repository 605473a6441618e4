"""FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019) with a width knob.

The detector is torchvision's ``FCOS`` (``torchvision.models.detection.fcos``: its head, anchor
points, loss and post-processing) on a ResNet-FPN backbone built from :mod:`models.resnet`. At
``scale=1.0, depth=50, first_level=3, extra_levels=2, head_convs=4`` it is layer for layer
``torchvision.models.detection.fcos_resnet50_fpn(weights=None, weights_backbone=None)``: ResNet-50
(v1.5, BatchNorm since nothing is pretrained), an FPN of 256 channels on C3-C5 with P6/P7 from P5
(``LastLevelP6P7(256, 256)``), and the 4-convolution GroupNorm head (tests/test_detection.py
checks the parameter count against torchvision's).

``scale`` multiplies the backbone's stage widths (64, 128, 256, 512) and the FPN/head width (256);
the head width is rounded to a multiple of 32 (at least 32) because torchvision's ``FCOSHead``
normalises with ``GroupNorm(32, channels)``.

What ``forward`` computes: the network only (backbone, FPN, head) on a batch of normalised
images, returning plain tensors, so fvcore and ``FlopCounterMode`` both trace it. The anchor
points, the target assignment (centre sampling and the per-level size ranges), the losses (focal,
GIoU, centre-ness BCE) and the post-processing (score threshold, top-k, box decoding, NMS) are
torchvision's ``FCOS.compute_loss`` and ``FCOS.postprocess_detections``, which the detection
workload calls through :meth:`FCOSNet.anchors` and :attr:`FCOSNet.fcos`. torchvision's own input
transform (``GeneralizedRCNNTransform``: resize to ``min_size=800`` and normalise) is not used:
images reach the network at their own size, normalised by the workload.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from models.registry import register_model
from models.resnet import DEPTHS, ResNet, scaled

if TYPE_CHECKING:  # torchvision's detection and ops modules import torch._dynamo (~1.2 s): imported when used,
    # so importing the model registry (every run, every config) stays cheap
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOS

#: FPN and head width of FCOS (Tian et al. 2019, sec. 3.2; torchvision's fcos_resnet50_fpn).
FPN_CHANNELS = 256
#: torchvision's FCOSHead normalises with GroupNorm(32, channels).
HEAD_GROUPS = 32


@dataclass
class FcosConfig:
    """Architecture knobs of ``conf/harness/model/fcos.yaml`` (``scale`` is a top-level key)."""

    name: str = "fcos"
    depth: int = 50  # ResNet depth of the backbone: 18 | 34 | 50 | 101 | 152
    first_level: int = 3  # the FPN's finest level P<first_level> (stride 2**first_level), 2..5
    extra_levels: int = 2  # P6 and P7 from P5 (LastLevelP6P7) as published: 0 | 2
    head_convs: int = 4  # 3x3 conv + GroupNorm + ReLU layers in each head branch
    # torchvision sets each level's anchor size (its regression unit, and a quarter of the lower end
    # of its object-size range) equal to its stride; ratio r makes it r x stride.
    anchor_size_ratio: float = 1.0
    center_sampling_radius: float = 1.5  # in strides (Tian et al.'s centre sampling; torchvision's default)
    score_thresh: float = 0.2  # post-processing: torchvision's defaults
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    topk_candidates: int = 1000


def fpn_channels(scale: float) -> int:
    """FPN/head width at ``scale``: 256 x scale rounded to a multiple of 32, at least 32."""
    return max(HEAD_GROUPS, HEAD_GROUPS * int(round(FPN_CHANNELS * scale / HEAD_GROUPS)))


class ResNetFPN(nn.Module):
    """ResNet stages C<first_level>..C5 into an FPN (P<first_level>..P5, plus P6/P7)."""

    def __init__(self, depth: int, scale: float, first_level: int, extra_levels: int, out_channels: int) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        super().__init__()
        resnet = ResNet(depth, scale, num_classes=1, stem="imagenet")
        self.stem, self.stages = resnet.stem, resnet.stages  # the classifier (pool, fc) is dropped
        self.first_stage = first_level - 2  # C2 is stage 0 (stride 4)
        expansion = 4 if DEPTHS[depth][0] == "bottleneck" else 1
        widths = [scaled(w, scale) * expansion for w in (64, 128, 256, 512)]
        self.fpn = FeaturePyramidNetwork(widths[self.first_stage:], out_channels,
                                         extra_blocks=LastLevelP6P7(out_channels, out_channels) if extra_levels else None)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= self.first_stage:
                feats[str(i)] = x
        return list(self.fpn(feats).values())


class FCOSNet(nn.Module):
    """The FCOS network: ``forward(images) -> (cls_logits, bbox_regression, bbox_ctrness)``.

    Shapes: (N, L, num_classes), (N, L, 4), (N, L, 1) over the L locations of every level, finest
    first. :attr:`fcos` holds torchvision's ``FCOS`` (the same backbone and head modules) for
    its loss and post-processing.
    """

    def __init__(self, fcos: FCOS) -> None:
        super().__init__()
        self.fcos = fcos

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats = self.fcos.backbone(images)
        return list(feats.values()) if isinstance(feats, dict) else feats

    def head(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.fcos.head(feats)
        return out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head(self.features(images))

    def anchors(self, images: torch.Tensor, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """torchvision's anchor boxes (one per location and image; their centres are FCOS's points)."""
        from torchvision.models.detection.image_list import ImageList

        sizes = [(int(images.shape[-2]), int(images.shape[-1]))] * int(images.shape[0])
        return self.fcos.anchor_generator(ImageList(images, sizes), feats)


def _anchor_generator(num_levels: int, first_level: int, ratio: float) -> "AnchorGenerator":
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = tuple((ratio * 2 ** (first_level + i),) for i in range(num_levels))
    return AnchorGenerator(sizes, ((1.0,),) * num_levels)


@register_model("fcos", FcosConfig, task="detection")
def build_fcos(
    scale: float = 1.0,
    depth: int = 50,
    first_level: int = 3,
    extra_levels: int = 2,
    head_convs: int = 4,
    anchor_size_ratio: float = 1.0,
    center_sampling_radius: float = 1.5,
    score_thresh: float = 0.2,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
    num_classes: int = 91,
) -> FCOSNet:
    """FCOS with a ResNet-``depth``-FPN backbone at width ``scale``; ``num_classes`` comes from the data
    (torchvision's FCOS has no background class: one sigmoid per category)."""
    from torchvision.models.detection.fcos import FCOS, FCOSHead

    if depth not in DEPTHS:
        raise ValueError(f"model.depth={depth} is invalid; valid depths: {sorted(DEPTHS)}")
    if first_level not in (2, 3, 4, 5):
        raise ValueError(f"model.first_level={first_level} is invalid; valid: 2, 3, 4, 5")
    if extra_levels not in (0, 2):
        raise ValueError(f"model.extra_levels={extra_levels} is invalid; valid: 0 (P5 last) or 2 (P6, P7)")
    if head_convs < 0 or not anchor_size_ratio > 0:
        raise ValueError(f"model.head_convs={head_convs} must be >= 0 and anchor_size_ratio={anchor_size_ratio} > 0")
    channels = fpn_channels(scale)
    backbone = ResNetFPN(depth, scale, first_level, extra_levels, channels)
    num_levels = 6 - first_level + extra_levels
    anchors = _anchor_generator(num_levels, first_level, anchor_size_ratio)
    head = FCOSHead(channels, 1, num_classes, num_convs=head_convs)
    fcos = FCOS(backbone, num_classes, anchor_generator=anchors, head=head,
                center_sampling_radius=center_sampling_radius, score_thresh=score_thresh, nms_thresh=nms_thresh,
                detections_per_img=detections_per_img, topk_candidates=topk_candidates)
    return FCOSNet(fcos)
