"""harness.workloads.image_data: IDX reading, the dataset registry, and clear errors for missing data."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from harness.workloads.image_data import _random_crop_flip, build_data, read_idx
from harness.errors import DataNotFoundError, UserError


def data_cfg(**kw):
    base = dict(name="fashion_mnist", root=None, download=False, image_size=28, train_subset=None,
                eval_subset=None, augment=False, num_workers=0)
    return OmegaConf.create({**base, **kw})


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def tiny_fashion(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def test_read_idx_round_trips(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)


def test_read_idx_rejects_truncated_files(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_fashion_mnist_from_a_configured_root(tmp_path):
    bundle = build_data(data_cfg(root=str(tiny_fashion(tmp_path)), train_subset=16), torch.device("cpu"))
    assert (bundle.num_train, bundle.num_eval, bundle.num_classes, bundle.in_channels) == (16, 10, 10, 1)
    batches = list(bundle.train_batches(8, torch.Generator().manual_seed(0)))
    assert len(batches) == 2 and batches[0][0].shape == (8, 1, 28, 28) and batches[0][0].dtype == torch.float32
    labels = torch.cat([y for _, y in bundle.eval_batches(4)])
    assert labels.tolist() == [i % 10 for i in range(10)]  # evaluation keeps file order


def test_real_fashion_mnist_has_the_published_sizes(fashion_mnist_root):
    bundle = build_data(data_cfg(root=str(fashion_mnist_root)), torch.device("cpu"))
    assert (bundle.num_train, bundle.num_eval) == (60_000, 10_000)


def test_missing_fashion_mnist_says_where_and_how(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        build_data(data_cfg(root=str(tmp_path)), torch.device("cpu"))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.root" in message


def test_missing_cifar10_without_download_does_not_fetch(tmp_path):
    with pytest.raises(DataNotFoundError, match="data.download=true"):
        build_data(data_cfg(name="cifar10", root=str(tmp_path), image_size=32), torch.device("cpu"))
    assert list(tmp_path.iterdir()) == []


def test_missing_imagenet_names_the_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "train")):
        build_data(data_cfg(name="imagenet", root=str(tmp_path), image_size=224), torch.device("cpu"))


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UserError, match="cifar10, fashion_mnist, imagenet"):
        build_data(data_cfg(name="mnist"), torch.device("cpu"))


def test_crop_flip_keeps_shape_and_pixels():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    torch.manual_seed(0)
    out = _random_crop_flip(x, pad=2)
    assert out.shape == x.shape
    # every output pixel is either zero padding or a pixel of the same sample
    for i in range(2):
        values = set(out[i].flatten().tolist()) - {0.0}
        assert values <= set(x[i].flatten().tolist())


@pytest.mark.gpu
def test_in_memory_images_live_on_the_gpu_and_give_the_same_batches():
    """On CUDA the uint8 set is resident on the device; the batches are those the CPU path builds."""
    import torch

    from harness.workloads.image_data import TensorImages

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (40,), generator=g)
    cpu = TensorImages(images, labels, (0.5,), (0.25,), torch.device("cpu"), channels_last=True)
    gpu = TensorImages(images, labels, (0.5,), (0.25,), torch.device("cuda"), channels_last=True)
    assert gpu.images.is_cuda and gpu.labels.is_cuda
    pairs = zip(cpu.train_batches(16, torch.Generator().manual_seed(3)), gpu.train_batches(16, torch.Generator().manual_seed(3)))
    # (x / 255 - mean) / std rounds differently on the GPU (its division is a reciprocal multiply): up to an
    # ulp of x / 255 (6e-8) over std, 2.4e-7, absolute, which near 0 is more than allclose's relative 1e-5.
    # A wrong sample differs by at least 1 / 255 / std = 0.016.
    same = lambda a, b: torch.allclose(a, b.cpu(), rtol=0, atol=1e-6)  # noqa: E731
    for (xc, yc), (xg, yg) in pairs:
        assert xg.is_cuda and xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(yc, yg.cpu()) and same(xc, xg)
    for (xc, yc), (xg, yg) in zip(cpu.eval_batches(16), gpu.eval_batches(16)):
        assert torch.equal(yc, yg.cpu()) and same(xc, xg)


def test_to_device_on_the_cpu_is_a_plain_move():
    from harness.device import to_device

    x = torch.arange(6)
    assert to_device(x, torch.device("cpu")) is x and to_device(None, torch.device("cpu")) is None


@pytest.mark.gpu
def test_to_device_on_cuda_copies_through_pinned_memory(monkeypatch):
    from harness.device import to_device

    pinned = []
    real = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(1) or real(self, *a, **k))
    x = torch.arange(1000)
    y = to_device(x, torch.device("cuda"))
    assert y.is_cuda and pinned == [1] and torch.equal(y.cpu(), x)
    assert to_device(y, torch.device("cuda")) is y  # already there: no copy
