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


#: Where the shared data sits beside a checkout, used when the variable is unset.
SHARED_DATA_BESIDE = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference data folder: $COMPUTELIMITS_SHARED_DATA, else ../shared/data beside the checkout."""
    value = os.environ.get(SHARED_DATA_ENV)
    if value:
        if not Path(value).is_dir():
            _required("shared data", f"{SHARED_DATA_ENV}={value} is not a folder")
        return Path(value)
    if SHARED_DATA_BESIDE.is_dir():
        return SHARED_DATA_BESIDE
    _required("shared data", f"set {SHARED_DATA_ENV} to the ../shared/data folder (none beside the checkout)")


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """Fashion-MNIST idx files (Debian's dataset-fashion-mnist, or $COMPUTELIMITS_FASHION_MNIST)."""
    root = Path(os.environ.get(FASHION_MNIST_ENV, FASHION_MNIST_DEFAULT))
    if not (root / "t10k-labels-idx1-ubyte.gz").is_file() and not (root / "t10k-labels-idx1-ubyte").is_file():
        _required("Fashion-MNIST", f"apt-get install dataset-fashion-mnist or set {FASHION_MNIST_ENV}")
    return root


#: A tiny image-classification run: seconds on a CPU (conf/harness/workload_preset/image_classification_tiny.yaml).
TINY_HARNESS = ("preset=tiny", "device=cpu")


@pytest.fixture(scope="session")
def compose_harness(fashion_mnist_root):
    """``compose_harness(tmp_path, *overrides)``: the harness config of a tiny run, through Hydra's compose API.

    Hardware profiles are looked up under ``tmp_path/hardware``, so no profile left in
    ``results/`` by another process is ever used.
    """
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    def compose_cfg(tmp_path: Path, *overrides: str):
        register_configs()
        with initialize_config_dir(config_dir=str(REPO_ROOT / "conf" / "harness"), version_base="1.3"):
            return compose("config", overrides=[*TINY_HARNESS, f"data.root={fashion_mnist_root}",
                                                f"measure.hardware_profiles_dir={tmp_path / 'hardware'}", *overrides])

    return compose_cfg


@pytest.fixture(scope="session")
def workload_data_roots(fashion_mnist_root, shared_data) -> dict[str, Path]:
    """``data.root`` of each built-in workload's default dataset, for its tiny preset."""
    return {"image_classification": fashion_mnist_root, "ner": shared_data / "conll2003",
            "translation": shared_data / "tatoeba-eng-fra",
            "detection": fashion_mnist_root,
            "qa": shared_data / "conll2003"}


@pytest.fixture(scope="session")
def compose_workload(workload_data_roots):
    """``compose_workload(tmp_path, name, *overrides)``: workload ``name`` at ``preset=tiny`` on the CPU."""
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    def compose_cfg(tmp_path: Path, name: str, *overrides: str):
        register_configs()
        with initialize_config_dir(config_dir=str(REPO_ROOT / "conf" / "harness"), version_base="1.3"):
            return compose("config", overrides=[f"workload={name}", *TINY_HARNESS, f"data.root={workload_data_roots[name]}",
                                                f"measure.hardware_profiles_dir={tmp_path / 'hardware'}", *overrides])

    return compose_cfg


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
