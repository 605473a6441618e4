"""The Workload protocol: one class per benchmark family, and their registry.

Modelled on AlgoPerf's ``spec.Workload``: constants (the literature benchmark a workload stands
for, its metric and the paper's error convention) are kept apart from behaviour (build the
model and data, the loss, the evaluation). The runner only talks to this interface, so adding
detection, QA, NER or translation means one new module under ``harness/workloads/``.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import UserError

Batch = Any  # whatever the workload's data yields; the runner never looks inside


class Workload(abc.ABC):
    """One benchmark family. Subclasses set the class constants and implement the methods."""

    #: config name (``workload=...``)
    name: ClassVar[str]
    #: the literature benchmark it stands for: imagenet, coco, squad1.1, conll2003, wmt2014_en_fr
    benchmark: ClassVar[str]
    #: name of the quality metric reported, e.g. "top1_accuracy"
    metric_name: ClassVar[str]

    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.cfg, self.device = cfg, device

    @abc.abstractmethod
    def build_data(self) -> Any:
        """Load the data. Returns an object with ``train_batches(batch_size, rng)``,
        ``eval_batches(batch_size)``, ``num_train``, ``num_eval``, ``name`` and ``source``."""

    @abc.abstractmethod
    def build_model(self, data: Any) -> nn.Module:
        """Build the model named by ``cfg.model`` at ``cfg.scale`` for this data (not yet on device)."""

    @abc.abstractmethod
    def model_inputs(self, batch: Batch) -> tuple:
        """Positional inputs of ``model(*inputs)`` for a batch (used for FLOP counting)."""

    @abc.abstractmethod
    def batch_size_of(self, batch: Batch) -> int:
        """Number of samples in a batch."""

    @abc.abstractmethod
    def slice_batch(self, batch: Batch, n: int) -> Batch:
        """The first ``n`` samples of a batch (FLOPs are counted per sample)."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Forward pass and the scalar training loss (mean over the batch)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, data: Any) -> float:
        """The metric on the evaluation set, in the metric's own units (e.g. accuracy in [0, 1])."""

    @abc.abstractmethod
    def error_from_metric(self, metric_value: float) -> float:
        """The paper's error convention: 1 - top-1, 1 - box AP, 1 - EM, 1 - F1, 1 - BLEU/100."""


_WORKLOADS: dict[str, type[Workload]] = {}


def register_workload(cls: type[Workload]) -> type[Workload]:
    """Class decorator: make ``cls`` available as ``workload=<cls.name>``."""
    if cls.name in _WORKLOADS:
        raise ValueError(f"workload {cls.name!r} is registered twice")
    _WORKLOADS[cls.name] = cls
    return cls


def workload_names() -> list[str]:
    return sorted(_WORKLOADS)


def build_workload(name: str, cfg: Any, device: torch.device) -> Workload:
    """The workload registered as ``name``; an unknown name lists the valid ones."""
    import harness.workloads  # noqa: F401  (registers the built-in workloads)

    if name not in _WORKLOADS:
        raise UserError(f"workload={name!r} is unknown; known workloads: {', '.join(workload_names())}")
    return _WORKLOADS[name](cfg, device)
