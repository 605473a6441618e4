"""Shared fixtures. Tests are offline, CPU-only unless marked ``gpu``, and write only to tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

#: Where the shared reference data lives (../shared/data beside the checkout); .ci/run sets it.
SHARED_DATA_ENV = "COMPUTELIMITS_SHARED_DATA"
#: Fashion-MNIST root; default: Debian's dataset-fashion-mnist location.
FASHION_MNIST_ENV = "COMPUTELIMITS_FASHION_MNIST"
FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _required(what: str, hint: str):
    """Skip locally, but fail under CI, where a missing fixture means a broken set-up."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is missing under CI: {hint}")
    pytest.skip(f"{what} not available: {hint}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference data folder, from $COMPUTELIMITS_SHARED_DATA."""
    value = os.environ.get(SHARED_DATA_ENV)
    if not value or not Path(value).is_dir():
        _required("shared data", f"set {SHARED_DATA_ENV} to the ../shared/data folder")
    return Path(value)


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """Fashion-MNIST idx files (Debian's dataset-fashion-mnist, or $COMPUTELIMITS_FASHION_MNIST)."""
    root = Path(os.environ.get(FASHION_MNIST_ENV, FASHION_MNIST_DEFAULT))
    if not (root / "t10k-labels-idx1-ubyte.gz").is_file() and not (root / "t10k-labels-idx1-ubyte").is_file():
        _required("Fashion-MNIST", f"apt-get install dataset-fashion-mnist or set {FASHION_MNIST_ENV}")
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
