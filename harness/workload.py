"""The Workload contract: one class per benchmark family, and their registry.

Modelled on AlgoPerf's ``spec.Workload``: constants (the literature benchmark a workload stands
for, its primary metric and the paper's error convention) are kept apart from behaviour (build
the data and model, the loss, the evaluation). The runner only talks to this interface, so a new
benchmark family is one module under ``harness/workloads/`` and one file under
``conf/harness/workload/``; the runner never branches on a workload's name.

What the contract fixes, for any kind of data:

- **Batches** are whatever the workload's data yields. The runner asks the workload how many
  samples a batch holds and how many of its positions are real rather than padding
  (:meth:`Workload.positions_of`), and counts FLOPs on :meth:`Workload.model_inputs` once per
  distinct shape (:meth:`Workload.shape_key`), so padded, variable-length batches are counted
  as they ran.
- **Loss** is a (sum, count) pair, so a padded or masked batch weighs its real items only; the
  loop trains on ``sum / count``.
- **Evaluation** returns an :class:`Evaluation`: a dict of metrics holding the primary one
  (``metric_name``), plus the predictions and references in the benchmark's standard format,
  as files the runner writes into the run folder so the standard tool can re-score them.
- **Configs** are typed: each workload names the dataclasses of its ``workload:`` node and of
  its datasets' ``data:`` node (registered in Hydra's ConfigStore as ``<name>_schema`` and
  ``<name>_data_schema``), and the models made for it register ``task=<name>``.

The registry is lazy: :func:`workload_class` imports the modules of :mod:`harness.workloads`
on first use, so importing this module imports no workload (no import cycle).
"""
from __future__ import annotations

import abc
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable, Iterable, Optional, Protocol

import torch
from omegaconf import MISSING
from torch import nn

from harness.errors import UserError

Batch = Any  # whatever the workload's data yields; the runner never looks inside


@dataclass
class WorkloadConfig:
    """Settings every workload has (``workload.*``); a workload subclasses it for its own."""

    name: str = MISSING


@dataclass
class DataConfig:
    """Settings every dataset has (``data.*``); a workload subclasses it for its datasets.

    ``root`` null means the dataset's standard location (the workload's reader says which).
    """

    name: str = MISSING
    root: Optional[str] = None
    download: bool = False  # fetch from the dataset's pinned source when it is not found locally
    train_subset: Optional[int] = None  # first N training examples; null = all
    eval_subset: Optional[int] = None  # first N evaluation examples; null = the full test set


class WorkloadData(Protocol):
    """What the runner needs from a workload's data (the rest is the workload's own business)."""

    name: str  # the dataset's name in result.json; fits are per dataset
    source: str  # where it was read from
    num_train: int  # training samples (sentences, images, question-context pairs, ...)
    num_eval: int  # samples of the reported evaluation set
    #: optional ``details: dict``: facts about the data worth keeping (the split and how it was
    #: drawn, vocabulary sizes, malformed lines skipped); written to result.json ``dataset_details``

    def train_batches(self, batch_size: int, rng: torch.Generator) -> Iterable[Batch]:
        """One epoch of training batches in an order drawn from ``rng``."""


@dataclass
class Evaluation:
    """One evaluation: every metric, and the predictions as files for the run folder.

    ``metrics`` holds the primary metric under the workload's ``metric_name`` and any others
    (precision, recall, a dev-set score, EM beside F1), in the metric's own units. ``files``
    maps a file name (no folders) to its text: predictions and references in the benchmark's
    standard format (``predictions.conll``, ``detections.json``, ...). ``details`` are facts
    about how the metric was computed (a scorer's signature, the decoding method) that go into
    ``result.json`` as ``metric_details``. A workload whose evaluation costs something else
    than one forward pass per sample (autoregressive decoding, beam search) counts it itself
    (e.g. with :func:`harness.measure.flops.count_forward_macs` per step shape) and returns it
    in ``flops`` (2 per multiply-add) with ``flops_method``; otherwise the runner estimates it.
    """

    metrics: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    flops: Optional[float] = None
    flops_method: Optional[str] = None


class Workload(abc.ABC):
    """One benchmark family. Subclasses set the class constants and implement the methods."""

    #: config name (``workload=...``)
    name: ClassVar[str]
    #: the literature benchmark it stands for: imagenet, coco, squad1.1, conll2003, wmt2014_en_fr
    benchmark: ClassVar[str]
    #: name of the primary quality metric, e.g. "top1_accuracy", "entity_f1"
    metric_name: ClassVar[str]
    #: files every evaluation writes into the run folder (the predictions in the benchmark's format)
    prediction_files: ClassVar[tuple[str, ...]] = ()
    #: typed schema of the ``workload:`` node (a :class:`WorkloadConfig` subclass)
    config_class: ClassVar[type] = WorkloadConfig
    #: typed schema of this workload's ``data:`` node (a :class:`DataConfig` subclass)
    data_config_class: ClassVar[type] = DataConfig

    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.cfg, self.device = cfg, device

    # ------------------------------------------------------------ building
    @abc.abstractmethod
    def build_data(self) -> WorkloadData:
        """Load the data named by ``cfg.data`` (raise :class:`harness.errors.DataNotFoundError`
        or :class:`UserError` with a one-line message naming file and line when it is bad)."""

    @abc.abstractmethod
    def build_model(self, data: WorkloadData) -> nn.Module:
        """The model named by ``cfg.model`` at ``cfg.scale``, sized for ``data`` (not yet on device);
        usually :meth:`registered_model` with the data's dimensions."""

    def registered_model(self, **dims: Any) -> nn.Module:
        """``cfg.model`` from the model registry at ``cfg.scale``, with the data's dimensions
        (``num_classes=...``, ``vocab_size=...``) and the node's architecture knobs."""
        from omegaconf import OmegaConf

        from models import build_model

        arch = OmegaConf.to_container(self.cfg.model, resolve=True) if OmegaConf.is_config(self.cfg.model) \
            else dict(self.cfg.model)
        name = arch.pop("name")
        try:
            return build_model(name, scale=self.cfg.scale, **dims, **arch)
        except (KeyError, ValueError) as exc:
            raise UserError(str(exc).strip("\"'")) from None

    # ------------------------------------------------------------ batches
    @abc.abstractmethod
    def model_inputs(self, batch: Batch) -> tuple:
        """Positional inputs of ``model(*inputs)`` for a batch, as the loss runs it (FLOPs are
        counted on this call)."""

    @abc.abstractmethod
    def batch_size_of(self, batch: Batch) -> int:
        """Number of samples in a batch (a Python int: no device synchronisation)."""

    def positions_of(self, batch: Batch) -> tuple[int, int]:
        """(real, padded) positions the batch computes on, as Python ints; their ratio gives
        ``padding_fraction``. Default: no padding (one position per sample)."""
        n = self.batch_size_of(batch)
        return n, n

    def shape_key(self, batch: Batch) -> Hashable:
        """Batches with equal keys cost the same FLOPs (counted once, cached). Default: the
        shapes and dtypes of :meth:`model_inputs`' tensors."""
        return tuple((tuple(x.shape), str(x.dtype)) if isinstance(x, torch.Tensor) else repr(x)
                     for x in self.model_inputs(batch))

    # ------------------------------------------------------------ training and evaluation
    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        """Forward pass; returns (sum of the per-item losses, number of items) for the batch.
        The count may be an int or a tensor; the loop trains on sum / count."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, data: WorkloadData) -> Evaluation:
        """Every metric on the evaluation set(s), and the predictions as files. Called in eval
        mode, under the run's precision; must not change the model."""

    @abc.abstractmethod
    def error_from_metric(self, metric_value: float) -> float:
        """The paper's error convention: 1 - top-1, 1 - box AP, 1 - EM, 1 - F1, 1 - BLEU/100."""

    def counts_flops(self) -> bool:
        """Whether this run counts FLOPs (``measure.count_flops``): an evaluation that counts its own
        batches (:class:`harness.measure.batch_flops.ShapeCounts`) skips counting when it is off."""
        from omegaconf import OmegaConf

        return bool(OmegaConf.select(self.cfg, "measure.count_flops", default=True))


# ---------------------------------------------------------------- the registry (lazy)
_WORKLOADS: dict[str, type[Workload]] = {}
_LOADED = False


def register_workload(cls: type[Workload]) -> type[Workload]:
    """Class decorator: make ``cls`` available as ``workload=<cls.name>``."""
    if _WORKLOADS.get(cls.name, cls) is not cls:
        raise ValueError(f"workload {cls.name!r} is registered twice")
    for attr, base in (("config_class", WorkloadConfig), ("data_config_class", DataConfig)):
        if not issubclass(getattr(cls, attr), base):
            raise TypeError(f"workload {cls.name!r}: {attr} must subclass {base.__name__}")
    _WORKLOADS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    """Import every module of :mod:`harness.workloads` once (each registers its workload)."""
    global _LOADED
    if _LOADED:
        return
    import harness.workloads as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def workloads() -> dict[str, type[Workload]]:
    """Every registered workload class by name (the built-in ones are imported on first call)."""
    _load_builtin()
    return dict(sorted(_WORKLOADS.items()))


def workload_names() -> list[str]:
    return list(workloads())


def workload_class(name: str) -> type[Workload]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    known = workloads()
    if name not in known:
        raise UserError(f"workload={name!r} is unknown; known workloads: {', '.join(known)}")
    return known[name]


def build_workload(name: str, cfg: Any, device: torch.device) -> Workload:
    return workload_class(name)(cfg, device)


def data_root(dcfg: Any, holds: str, must_exist: bool = True) -> "Path":
    """``data.root`` as a path, or a one-line :class:`~harness.errors.DataNotFoundError` saying what
    the folder should hold (``holds``) when it is unset or (``must_exist``) not a folder."""
    from pathlib import Path

    from harness.errors import DataNotFoundError

    if dcfg.root is None:
        raise DataNotFoundError(f"data.root is not set: point it at {holds}")
    root = Path(str(dcfg.root)).expanduser()
    if must_exist and not root.is_dir():
        raise DataNotFoundError(f"data.root={dcfg.root}: no such folder (it should be {holds})")
    return root
