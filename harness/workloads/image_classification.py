"""Image classification: the ImageNet row of the literature, at any image dataset's scale."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from harness.data import DataBundle, build_data
from harness.errors import UserError
from harness.workload import Workload, register_workload
from models import build_model


@register_workload
class ImageClassification(Workload):
    name = "image_classification"
    benchmark = "imagenet"
    metric_name = "top1_accuracy"

    def build_data(self) -> DataBundle:
        return build_data(self.cfg.data, self.device, channels_last=self.cfg.trainer.channels_last)

    def build_model(self, data: DataBundle) -> nn.Module:
        arch = OmegaConf.to_container(self.cfg.model, resolve=True) if OmegaConf.is_config(self.cfg.model) else dict(self.cfg.model)
        name = arch.pop("name")
        try:
            model = build_model(
                name,
                scale=self.cfg.scale,
                num_classes=data.num_classes,
                in_channels=data.in_channels,
                image_size=data.image_size,
                **arch,
            )
        except (KeyError, ValueError) as exc:
            raise UserError(str(exc).strip("\"'")) from None
        if self.cfg.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def model_inputs(self, batch: Any) -> tuple:
        return (batch[0],)

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[1].shape[0])

    def slice_batch(self, batch: Any, n: int) -> Any:
        return batch[0][:n], batch[1][:n]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=self.cfg.trainer.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: DataBundle) -> float:
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for x, y in data.eval_batches(self.cfg.trainer.eval_batch_size):
            correct += (model(x).argmax(dim=1) == y).sum()
            seen += int(y.shape[0])
        return correct.item() / seen

    def error_from_metric(self, metric_value: float) -> float:
        # Thompson et al. use ImageNet error = 1 - top-1 accuracy.
        return 1.0 - metric_value
