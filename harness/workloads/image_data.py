"""Image datasets of the image-classification workload: a registry keyed by ``data.name``.

Small datasets (Fashion-MNIST, CIFAR-10) are held in memory as uint8 tensors and batched,
normalised and augmented on the training device, which on a 2-core CPU is far faster than a
per-sample DataLoader. ImageNet is read per sample through ``ImageFolder`` and a DataLoader.
There is never a silent fallback from one dataset to another: a missing dataset raises
:class:`DataNotFoundError` naming where we looked and how to get it.
"""
from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from harness.errors import DataNotFoundError, UserError
from harness.workload import DataConfig

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ImageDataConfig(DataConfig):
    """An image dataset (``data.*``): the generic fields and the image-only ones."""

    image_size: int = 28  # pixels, side of the square input the model sees
    augment: bool = False  # random crop (pad 4) and horizontal flip, on training batches only
    num_workers: int = 0  # DataLoader workers for datasets read from disk per sample


@dataclass
class DataBundle:
    """What a workload needs from a dataset."""

    name: str
    train_batches: Callable[[int, torch.Generator], Iterable[Batch]]  # (batch_size, rng) -> one epoch
    eval_batches: Callable[[int], Iterable[Batch]]  # batch_size -> the evaluation set, in order
    num_train: int
    num_eval: int
    num_classes: int
    in_channels: int
    image_size: int
    source: str  # where it was read from


_DATASETS: dict[str, Callable[[Any, torch.device, bool], DataBundle]] = {}


def register_dataset(name: str) -> Callable:
    def wrap(fn: Callable[[Any, torch.device], DataBundle]) -> Callable:
        _DATASETS[name] = fn
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def build_data(cfg: Any, device: torch.device, channels_last: bool = False) -> DataBundle:
    """Load dataset ``cfg.name`` (an :class:`ImageDataConfig`) for ``device``.

    ``channels_last`` makes batches NHWC in memory, which oneDNN and cuDNN convolutions prefer.
    """
    if cfg.name not in _DATASETS:
        raise UserError(f"data.name={cfg.name!r} is unknown; known datasets: {', '.join(dataset_names())}")
    for key in ("train_subset", "eval_subset"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            raise UserError(f"data.{key}={value} is invalid: it must be a positive count or null")
    return _DATASETS[cfg.name](cfg, device, channels_last)


# ---------------------------------------------------------------- in-memory image tensors
class TensorImages:
    """uint8 images (N, C, H, W) and int64 labels held in memory, batched on ``device``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        augment: bool = False,
        channels_last: bool = False,
    ) -> None:
        # On CUDA the whole uint8 set lives on the device (Fashion-MNIST 47 MB, CIFAR-10 150 MB): a batch
        # is one gather kernel there, with no host indexing or host-to-device copy between the steps.
        resident = device.type == "cuda"
        self.images = images.to(device) if resident else images
        self.labels = labels.to(device) if resident else labels
        self.device, self.augment = device, augment
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.labels)

    def _prepare(self, idx: torch.Tensor, train: bool) -> Batch:
        x, y = self.images[idx], self.labels[idx]  # on self.device already (see __init__)
        x = (x.float().div_(255.0) - self.mean) / self.std
        if train and self.augment:
            x = _random_crop_flip(x)
        return x.contiguous(memory_format=self.memory_format), y

    def train_batches(self, batch_size: int, rng: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self), generator=rng).to(self.images.device)  # the same order on any device
        for start in range(0, len(self) - batch_size + 1, batch_size):  # drop the ragged last batch
            yield self._prepare(order[start : start + batch_size], train=True)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self), batch_size):
            yield self._prepare(torch.arange(start, min(start + batch_size, len(self)), device=self.images.device), train=False)


def _random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel translation (zero padding) and horizontal flip, per sample.

    The standard CIFAR augmentation of He et al. 2016, sec. 4.2.
    """
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    flip = torch.rand(n, device=x.device) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _subset(images: torch.Tensor, labels: torch.Tensor, n: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return (images, labels) if n is None else (images[:n], labels[:n])


def _in_memory_bundle(cfg: Any, device: torch.device, channels_last: bool, name: str, train, test, mean, std, num_classes, source) -> DataBundle:
    train_set = TensorImages(*_subset(*train, cfg.train_subset), mean, std, device, cfg.augment, channels_last)
    eval_set = TensorImages(*_subset(*test, cfg.eval_subset), mean, std, device, False, channels_last)
    if cfg.image_size != train_set.images.shape[-1]:
        raise UserError(
            f"data.image_size={cfg.image_size} does not match {name}'s {train_set.images.shape[-1]} px images"
        )
    return DataBundle(
        name=name,
        train_batches=train_set.train_batches,
        eval_batches=eval_set.eval_batches,
        num_train=len(train_set),
        num_eval=len(eval_set),
        num_classes=num_classes,
        in_channels=train_set.images.shape[1],
        image_size=cfg.image_size,
        source=source,
    )


# ---------------------------------------------------------------- Fashion-MNIST
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
# Per-channel statistics of the Fashion-MNIST training images (computed over all 60k, 0-1 scale).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun et al.'s MNIST format), gzipped or not.

    Format: 2 zero bytes, a type byte (0x08 = uint8), a rank byte, rank big-endian uint32 sizes,
    then the data (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE").
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip, unreadable file
        raise UserError(f"{path} cannot be read: {exc}; the file is corrupt or truncated, download or "
                        "install it again") from None
    if len(raw) < 4 or len(raw) < 4 + 4 * raw[3]:
        raise UserError(f"{path} is truncated: {len(raw)} bytes, shorter than an IDX header")
    zero, dtype_code, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path} is not a uint8 IDX file (header {raw[:4].hex()})")
    shape = struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != math.prod(shape):
        raise UserError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"data=fashion_mnist: {stem}[.gz] not found in {root}; install it with "
        f"`apt-get install dataset-fashion-mnist` (into {FASHION_MNIST_DEFAULT_ROOT}) or set data.root=DIR"
    )


@register_dataset("fashion_mnist")
def load_fashion_mnist(cfg: Any, device: torch.device, channels_last: bool = False) -> DataBundle:
    """Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) from its four IDX files under ``cfg.root``."""
    root = Path(cfg.root or FASHION_MNIST_DEFAULT_ROOT).expanduser()
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
        splits[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    return _in_memory_bundle(
        cfg, device, channels_last, "fashion_mnist", splits["train"], splits["test"], FASHION_MNIST_MEAN, FASHION_MNIST_STD, 10, str(root)
    )


# ---------------------------------------------------------------- CIFAR-10
# Per-channel mean and std of the CIFAR-10 training images (0-1 scale), as widely used.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@register_dataset("cifar10")
def load_cifar10(cfg: Any, device: torch.device, channels_last: bool = False) -> DataBundle:
    """CIFAR-10 in torchvision's layout (``<root>/cifar-10-batches-py``); downloads only if allowed."""
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root or "results/cache/data/cifar10").expanduser()
    splits = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = CIFAR10(str(root), train=train, download=cfg.download)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
            raise DataNotFoundError(
                f"data=cifar10: no CIFAR-10 in torchvision's format under {root} ({exc}); "
                "set data.root=DIR or allow data.download=true"
            ) from None
        except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # no network (URLError), bad archive or pickle
            what = "could not be downloaded" if cfg.download else "could not be read"
            raise DataNotFoundError(
                f"data=cifar10: CIFAR-10 {what} into {root} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                "without network, put torchvision's cifar-10-batches-py folder under data.root"
            ) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC uint8 -> NCHW
        splits[split] = (images, torch.tensor(ds.targets, dtype=torch.int64))
    return _in_memory_bundle(cfg, device, channels_last, "cifar10", splits["train"], splits["test"], CIFAR10_MEAN, CIFAR10_STD, 10, str(root))


# ---------------------------------------------------------------- ImageNet
# ImageNet channel statistics and the standard transforms (torchvision reference recipe,
# references/classification/presets.py): RandomResizedCrop + flip for training,
# Resize(256) + CenterCrop(224) for evaluation.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@register_dataset("imagenet")
def load_imagenet(cfg: Any, device: torch.device, channels_last: bool = False) -> DataBundle:
    """ImageNet-1k from ``<root>/train`` and ``<root>/val`` ImageFolder trees."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    root = Path(cfg.root).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataNotFoundError(
                f"data=imagenet: {root / split} is not a folder; ImageNet is not downloadable "
                "automatically: get ILSVRC2012 from image-net.org, lay it out as <root>/{train,val}/<wnid>/*.JPEG "
                "and set data.root=DIR"
            )
    size = cfg.image_size
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    eval_tf = transforms.Compose(
        [transforms.Resize(int(round(size * 256 / 224))), transforms.CenterCrop(size), transforms.ToTensor(), normalize]
    )
    train_set = datasets.ImageFolder(str(root / "train"), train_tf)
    eval_set = datasets.ImageFolder(str(root / "val"), eval_tf)
    if cfg.train_subset is not None:
        train_set = Subset(train_set, range(min(cfg.train_subset, len(train_set))))
    if cfg.eval_subset is not None:
        eval_set = Subset(eval_set, range(min(cfg.eval_subset, len(eval_set))))
    pin = device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def to_device(batches: Iterable[Batch]) -> Iterator[Batch]:
        for x, y in batches:
            yield x.to(device, non_blocking=True).contiguous(memory_format=memory_format), y.to(device, non_blocking=True)

    def train_batches(batch_size: int, rng: torch.Generator) -> Iterator[Batch]:
        loader = DataLoader(
            train_set, batch_size, shuffle=True, generator=rng, drop_last=True,
            num_workers=cfg.num_workers, pin_memory=pin, persistent_workers=False,
        )
        return to_device(loader)

    def eval_batches(batch_size: int) -> Iterator[Batch]:
        return to_device(DataLoader(eval_set, batch_size, num_workers=cfg.num_workers, pin_memory=pin))

    num_classes = len(train_set.dataset.classes if isinstance(train_set, Subset) else train_set.classes)
    return DataBundle("imagenet", train_batches, eval_batches, len(train_set), len(eval_set), num_classes, 3, size, str(root))
