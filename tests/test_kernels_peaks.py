"""Datasheet peak table, device naming and the hardware-profile file."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from kernels.device import device_name, device_slug
from kernels.peaks import DTYPES, PEAK_TABLE, PeakEntry, datasheet_peak, datasheet_peaks
from kernels.profile import REQUIRED_KEYS, load_profile, profile_path, write_profile


@pytest.mark.parametrize(
    ("name", "dtype", "device", "tflops"),
    [
        # H100: SXM, PCIe and NVL are three different parts with three different peaks.
        ("NVIDIA H100 80GB HBM3", "bf16", "NVIDIA H100 SXM", 989.5),
        ("NVIDIA H100 80GB HBM3", "fp32", "NVIDIA H100 SXM", 67.0),
        ("NVIDIA H100 PCIe", "bf16", "NVIDIA H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", "bf16", "NVIDIA H100 NVL", 835.5),
        ("NVIDIA H200", "fp16", "NVIDIA H200 SXM", 989.5),
        ("NVIDIA A100-SXM4-80GB", "tf32", "NVIDIA A100 SXM4 80GB", 156.0),
        ("NVIDIA A100-SXM4-40GB", "bf16", "NVIDIA A100 SXM4 40GB", 312.0),
        ("NVIDIA A100 80GB PCIe", "fp32", "NVIDIA A100 PCIe 80GB", 19.5),
        ("NVIDIA A100-PCIE-40GB", "fp16", "NVIDIA A100 PCIe 40GB", 312.0),
        ("Tesla V100-SXM2-16GB", "fp32", "NVIDIA V100 SXM2", 15.7),
        ("Tesla V100-PCIE-32GB", "fp16", "NVIDIA V100 PCIe", 112.0),
        ("Tesla V100 PCIe 32 GB", "fp32", "NVIDIA V100 PCIe", 14.0),  # literature spelling
        ("NVIDIA L4", "bf16", "NVIDIA L4", 121.0),
        ("NVIDIA L40S", "fp32", "NVIDIA L40S", 91.6),
        ("NVIDIA L40S", "bf16", "NVIDIA L40S", 362.05),
        ("NVIDIA A10", "tf32", "NVIDIA A10", 62.5),
        ("Tesla T4", "fp16", "NVIDIA T4", 65.0),
        ("NVIDIA GeForce RTX 3090", "fp32", "NVIDIA GeForce RTX 3090", 35.6),
        ("NVIDIA GeForce RTX 4090", "bf16", "NVIDIA GeForce RTX 4090", 165.2),
        ("Tesla K80", "fp32", "NVIDIA K80 (one GK210)", 4.365),
        ("Tesla K40c", "fp32", "NVIDIA K40", 4.29),
        ("GeForce Titan X", "fp32", "NVIDIA TITAN X (Pascal)", 10.974208),
        ("Tesla P100-PCIE-16GB", "fp32", "NVIDIA P100 PCIe", 9.3),
        ("Cloud TPU v3", "bf16", "Google Cloud TPU v3 (v3-8, 4 chips)", 420.0),
        ("Cloud TPU v2", "bfloat16", "Google Cloud TPU v2 (v2-8, 4 chips)", 180.0),
    ],
)
def test_known_devices(name: str, dtype: str, device: str, tflops: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known device must not warn
        entry = datasheet_peak(name, dtype)
    assert isinstance(entry, PeakEntry)
    assert entry.device == device
    assert entry.flops_per_s == pytest.approx(tflops * 1e12)
    assert entry.source


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("NVIDIA H100", "bf16"),  # form factor unknown: SXM and PCIe differ, so no guess
        ("NVIDIA A10G", "fp32"),  # not the A10
        ("NVIDIA L40", "fp32"),  # not the L40S
        ("GeForce GTX Titan X", "fp32"),  # Maxwell, not the Pascal TITAN X
        ("NVIDIA GeForce RTX 3090 Ti", "fp32"),
        ("AMD EPYC 7763 64-Core Processor", "fp32"),  # CPUs are not in the table
        ("Intel(R) Xeon(R) Platinum 8168 CPU @ 2.70GHz", "fp32"),
        ("Tesla V100-SXM2-16GB", "bf16"),  # Volta has no bf16
        ("Tesla T4", "tf32"),
        ("NVIDIA H100 80GB HBM3", "fp8"),  # unknown dtype
    ],
)
def test_unknown_gives_none_with_warning(name: str, dtype: str) -> None:
    with pytest.warns(UserWarning):
        assert datasheet_peak(name, dtype) is None


def test_table_is_dense_positive_and_cited() -> None:
    names = [spec.device for spec in PEAK_TABLE]
    assert len(names) == len(set(names))
    for spec in PEAK_TABLE:
        assert set(spec.flops_per_s) == set(DTYPES)
        assert "http" in spec.source, spec.device
        for value in spec.flops_per_s.values():
            assert value is None or value > 0  # null where unknown, never 0
        # Tensor-core dense rates are never below the plain FP32 rate.
        fp32 = spec.flops_per_s["fp32"]
        for low in ("tf32", "bf16", "fp16"):
            if fp32 and spec.flops_per_s[low]:
                assert spec.flops_per_s[low] >= fp32, spec.device


def test_no_table_name_matches_two_rows() -> None:
    from kernels.peaks import match_device

    for spec in PEAK_TABLE:
        assert [m.device for m in match_device(spec.device)] == [spec.device]


def test_datasheet_peaks_all_dtypes() -> None:
    peaks = datasheet_peaks("NVIDIA H100 PCIe")
    assert set(peaks) == set(DTYPES)
    assert peaks["tf32"] == pytest.approx(378e12)
    with pytest.warns(UserWarning):
        assert datasheet_peaks("AMD EPYC") == {d: None for d in DTYPES}


def test_device_name_cpu_is_stable_and_slug_is_safe() -> None:
    name = device_name(torch.device("cpu"))
    assert name and name == device_name("cpu")
    slug = device_slug(name)
    assert slug == device_slug(name)
    assert slug.replace("-", "").isalnum() and slug == slug.lower()
    assert device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert device_slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-r-xeon-r-cpu-2-20ghz"
    assert device_slug("///") == "unknown-device"


def _minimal_profile(name: str) -> dict:
    return {
        "device_name": name,
        "achieved_flops_per_s": {"fp32": 1.5e11, "tf32": None, "bf16": 2e11, "fp16": None},
        "datasheet_flops_per_s": {d: None for d in DTYPES},
        "bandwidth_bytes_per_s": {"device_copy": 1e10, "host_to_device": None},
    }


def test_profile_roundtrip_atomic(tmp_path) -> None:
    name = "NVIDIA H100 80GB HBM3"
    assert load_profile(name, root=tmp_path) is None  # missing: None, never measures
    path = write_profile(_minimal_profile(name), root=tmp_path)
    assert path == profile_path(name, tmp_path) == tmp_path / "nvidia-h100-80gb-hbm3.json"
    assert load_profile(name, root=tmp_path) == _minimal_profile(name)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    for key in REQUIRED_KEYS:
        assert key in json.loads(path.read_text())


def test_profile_writer_rejects_incomplete_and_nan(tmp_path) -> None:
    with pytest.raises(KeyError):
        write_profile({"device_name": "x"}, root=tmp_path)
    bad = _minimal_profile("x")
    bad["achieved_flops_per_s"]["fp32"] = float("nan")
    with pytest.raises(ValueError):
        write_profile(bad, root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_load_profile_ignores_corrupt_file(tmp_path) -> None:
    path = profile_path("cpu x", tmp_path)
    path.write_text("{not json")
    with pytest.warns(UserWarning):
        assert load_profile("cpu x", root=tmp_path) is None
