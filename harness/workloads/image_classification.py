"""Image classification: the ImageNet row of the literature, at any image dataset's scale."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.inference import fold_batchnorm
from harness.workload import Evaluation, Workload, WorkloadConfig, register_workload
from harness.workloads.image_data import DataBundle, ImageDataConfig, build_data


@dataclass
class ImageClassificationConfig(WorkloadConfig):
    """``workload.*`` of image classification."""

    name: str = "image_classification"
    channels_last: bool = True  # NHWC batches and weights, which oneDNN and cuDNN convolutions prefer
    label_smoothing: float = 0.0  # Szegedy et al. 2016, sec. 7; 0 = plain cross-entropy
    # Evaluate a copy with BatchNorm folded into the convolutions (harness.inference.fold_batchnorm):
    # the same function, one pass over the activations less per layer
    fold_batchnorm: bool = True


@register_workload
class ImageClassification(Workload):
    name = "image_classification"
    benchmark = "imagenet"
    metric_name = "top1_accuracy"
    config_class = ImageClassificationConfig
    data_config_class = ImageDataConfig

    def build_data(self) -> DataBundle:
        return build_data(self.cfg.data, self.device, channels_last=self.cfg.workload.channels_last)

    def build_model(self, data: DataBundle) -> nn.Module:
        model = self.registered_model(num_classes=data.num_classes, in_channels=data.in_channels,
                                       image_size=data.image_size)
        if self.cfg.workload.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def model_inputs(self, batch: Any) -> tuple:
        return (batch[0],)

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[1].shape[0])

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        x, y = batch
        total = F.cross_entropy(model(x), y, label_smoothing=self.cfg.workload.label_smoothing, reduction="sum")
        return total, int(y.shape[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: DataBundle) -> Evaluation:
        how = None
        if self.cfg.workload.fold_batchnorm:
            model, how = fold_batchnorm(model, channels_last=self.cfg.workload.channels_last)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for x, y in data.eval_batches(self.cfg.trainer.eval_batch_size):
            correct += (model(x).argmax(dim=1) == y).sum()
            seen += int(y.shape[0])
        return Evaluation(metrics={self.metric_name: correct.item() / seen},
                          details={"eval_model": how} if how else {})

    def error_from_metric(self, metric_value: float) -> float:
        # Thompson et al. use ImageNet error = 1 - top-1 accuracy.
        return 1.0 - metric_value
