"""Datasheet peak FLOP/s per device and dtype (dense, no structured sparsity).

One entry per device model, one source line per entry. The harness's hardware burden
(devices x peak x time, Thompson et al.'s definition) and datasheet MFU read this table.

Conventions:
    * FLOP/s count one multiply-add as 2 FLOPs (the project convention, DESIGN.md).
    * Dense peaks only. NVIDIA datasheets from Ampere on print tensor-core figures "with
      sparsity" (marked *); the dense figure is exactly half of that, and that half is what
      is stored here (the datasheets say the dense value is 1/2 the sparse one); where a
      datasheet prints a dense column itself (L40S), that column is used.
    * ``fp16`` and ``bf16`` are tensor-core (or MXU) rates with FP32 accumulation, which is
      what ``torch.matmul`` uses. GeForce cards accumulate in FP32 at half the FP16-accumulate
      rate, so their FP32-accumulate column is the one stored.
    * ``tf32`` and ``bf16`` are None on devices without them (pre-Ampere GPUs). A figure the
      cited source does not give is None too: never a guess.
    * One entry is one device as ``torch.cuda`` sees it (one GPU). The exception is the TPUs,
      which only appear in the literature data: one Cloud TPU "device" there is a 4-chip board
      (v2-8, v3-8, v4-8), which is the unit the paper's data (Thompson et al. 2022) counts.

Matching is by device name (``torch.cuda.get_device_name()`` strings such as
``"NVIDIA H100 80GB HBM3"`` and literature names such as ``"Tesla V100 PCIe 32 GB"``).
Names are split into lowercase tokens; an entry matches when all of its required tokens are
present, at least one of its variant tokens (if it has any) and none of its excluded tokens.
No match, or more than one, gives None with a warning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

__all__ = [
    "DTYPES", "PeakEntry", "DeviceSpec", "PEAK_TABLE", "datasheet_peak", "datasheet_peaks", "match_device",
]

#: The dtypes the table is keyed by.
DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")

_DTYPE_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "32": "fp32", "32-true": "fp32",
    "tf32": "tf32", "tensorfloat32": "tf32",
    "bf16": "bf16", "bfloat16": "bf16", "bf16-mixed": "bf16", "bf16-true": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "16": "fp16", "16-mixed": "fp16",
    "fp16-mixed": "fp16",
}

@dataclass(frozen=True)
class PeakEntry:
    """One datasheet peak.

    Attributes:
        device: Canonical device name of the table entry (e.g. ``"NVIDIA H100 SXM"``).
        dtype: One of ``fp32``, ``tf32``, ``bf16``, ``fp16``.
        flops_per_s: Dense peak, FLOP/s, 2 FLOPs per multiply-add.
        source: Where the figure comes from (datasheet name and URL, and how it was derived).
    """

    device: str
    dtype: str
    flops_per_s: float
    source: str


@dataclass(frozen=True)
class DeviceSpec:
    """A device row of the peak table.

    Attributes:
        device: Canonical name.
        require: Tokens that must all be in the normalised name.
        any_of: If non-empty, at least one of these tokens must be present (form factor).
        exclude: Tokens that must not be present (other variants with other peaks).
        flops_per_s: Dense peak per dtype; None where the device has none or the source
            gives none.
        source: Datasheet name and URL, plus any derivation.
    """

    device: str
    require: frozenset[str]
    any_of: frozenset[str]
    exclude: frozenset[str]
    flops_per_s: dict[str, float | None]
    source: str


def _spec(
    device: str,
    require: str,
    fp32: float | None,
    tf32: float | None,
    bf16: float | None,
    fp16: float | None,
    source: str,
    any_of: str = "",
    exclude: str = "",
) -> DeviceSpec:
    return DeviceSpec(
        device=device,
        require=frozenset(require.split()),
        any_of=frozenset(any_of.split()),
        exclude=frozenset(exclude.split()),
        flops_per_s={"fp32": fp32, "tf32": tf32, "bf16": bf16, "fp16": fp16},
        source=source,
    )


# Variant words that mark a different (usually slower) part than the one in a row.
_MOBILE = "laptop mobile max q"

# fmt: off
PEAK_TABLE: tuple[DeviceSpec, ...] = (
    # ---------------------------------------------------------------- Hopper
    _spec("NVIDIA H100 SXM", "h100", 67e12, 989e12 / 2, 1979e12 / 2, 1979e12 / 2,
          "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column, sparse tensor figures halved "
          "(https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet); "
          "'NVIDIA H100 80GB HBM3' is the SXM5 part",
          any_of="sxm sxm5 hbm3", exclude="pcie nvl"),
    _spec("NVIDIA H100 PCIe", "h100 pcie", 51e12, 756e12 / 2, 1513e12 / 2, 1513e12 / 2,
          "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe column, sparse tensor figures halved "
          "(https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet)",
          exclude="nvl sxm sxm5"),
    _spec("NVIDIA H100 NVL", "h100 nvl", 60e12, 835e12 / 2, 1671e12 / 2, 1671e12 / 2,
          "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL column (per GPU), sparse tensor "
          "figures halved (https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet)",
          exclude="pcie sxm sxm5"),
    _spec("NVIDIA H200 SXM", "h200", 67e12, 989e12 / 2, 1979e12 / 2, 1979e12 / 2,
          "NVIDIA H200 datasheet, H200 SXM column, sparse tensor figures halved "
          "(https://www.nvidia.com/en-us/data-center/h200/)",
          exclude="nvl pcie"),
    _spec("NVIDIA H200 NVL", "h200 nvl", 60e12, 835e12 / 2, 1671e12 / 2, 1671e12 / 2,
          "NVIDIA H200 datasheet, H200 NVL column, sparse tensor figures halved "
          "(https://www.nvidia.com/en-us/data-center/h200/)"),
    # ---------------------------------------------------------------- Ampere / Ada data centre
    _spec("NVIDIA A100 SXM4 40GB", "a100 40gb", 19.5e12, 156e12, 312e12, 312e12,
          "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB SXM column, dense figures "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)",
          any_of="sxm sxm4", exclude="pcie"),
    _spec("NVIDIA A100 SXM4 80GB", "a100 80gb", 19.5e12, 156e12, 312e12, 312e12,
          "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column, dense figures "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)",
          any_of="sxm sxm4", exclude="pcie"),
    _spec("NVIDIA A100 PCIe 40GB", "a100 pcie 40gb", 19.5e12, 156e12, 312e12, 312e12,
          "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB PCIe column, dense figures "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)",
          exclude="sxm sxm4"),
    _spec("NVIDIA A100 PCIe 80GB", "a100 pcie 80gb", 19.5e12, 156e12, 312e12, 312e12,
          "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB PCIe column, dense figures "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)",
          exclude="sxm sxm4"),
    _spec("NVIDIA A10", "a10", 31.2e12, 62.5e12, 125e12, 125e12,
          "NVIDIA A10 Tensor Core GPU datasheet, dense figures "
          "(https://www.nvidia.com/en-us/data-center/products/a10-gpu/)"),
    _spec("NVIDIA L4", "l4", 30.3e12, 120e12 / 2, 242e12 / 2, 242e12 / 2,
          "NVIDIA L4 Tensor Core GPU datasheet, sparse tensor figures halved "
          "(https://www.nvidia.com/en-us/data-center/l4/)"),
    _spec("NVIDIA L40S", "l40s", 91.6e12, 183e12, 362.05e12, 362.05e12,
          "NVIDIA L40S GPU datasheet, dense figures (TF32 183 | 366*, BF16/FP16 362.05 | 733*) "
          "(https://www.nvidia.com/en-us/data-center/l40s/)"),
    # ---------------------------------------------------------------- Volta / Turing data centre
    _spec("NVIDIA V100 SXM2", "v100 sxm2", 15.7e12, None, None, 125e12,
          "NVIDIA Tesla V100 datasheet, V100 SXM2 column; fp16 = tensor performance "
          "(https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf)"),
    _spec("NVIDIA V100 PCIe", "v100 pcie", 14e12, None, None, 112e12,
          "NVIDIA Tesla V100 datasheet, V100 PCIe column; fp16 = tensor performance "
          "(https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf)"),
    _spec("NVIDIA V100S PCIe", "v100s", 16.4e12, None, None, 130e12,
          "NVIDIA V100S datasheet; fp16 = tensor performance "
          "(https://images.nvidia.com/content/technologies/volta/pdf/tesla-volta-v100-datasheet-letter-fnl-web.pdf)"),
    _spec("NVIDIA T4", "t4", 8.1e12, None, None, 65e12,
          "NVIDIA T4 Tensor Core GPU datasheet; fp16 = mixed-precision FP16/FP32 tensor figure "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf)"),
    # ---------------------------------------------------------------- GeForce / workstation
    _spec("NVIDIA GeForce RTX 3090", "rtx 3090", 35.6e12, 35.6e12, 71e12, 71e12,
          "NVIDIA Ampere GA102 GPU Architecture whitepaper v2, Appendix A, RTX 3090 column, dense "
          "FP16/BF16 with FP32 accumulate "
          "(https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf)",
          exclude="ti " + _MOBILE),
    _spec("NVIDIA GeForce RTX 4090", "rtx 4090", 82.6e12, 82.6e12, 165.2e12, 165.2e12,
          "NVIDIA Ada Lovelace GPU Architecture whitepaper, Appendix A, RTX 4090 column, dense "
          "FP16/BF16 with FP32 accumulate "
          "(https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf)",
          exclude="d " + _MOBILE),
    _spec("NVIDIA RTX A6000", "rtx a6000", 38.7e12, 77.4e12, 154.8e12, 154.8e12,
          "NVIDIA Ampere GA102 GPU Architecture whitepaper v2, Appendix A, RTX A6000 column, dense "
          "(https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf)"),
    _spec("NVIDIA Quadro RTX 8000", "rtx 8000", 16.3e12, None, None, 130.5e12,
          "NVIDIA Quadro RTX 8000 datasheet; fp16 = tensor performance "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/design-visualization/quadro-product-literature/quadro-rtx-8000-us-nvidia-946977-r1-web.pdf)"),
    _spec("NVIDIA GeForce RTX 2080 Ti", "2080 ti", 13.4e12, None, None, 53.8e12,
          "NVIDIA Turing GPU Architecture whitepaper, Table 1, RTX 2080 Ti reference board "
          "(Founders Edition is 14.2/56.9); fp16 = tensor FP16 with FP32 accumulate "
          "(https://images.nvidia.com/aem-dam/en-zz/Solutions/design-visualization/technologies/turing-architecture/NVIDIA-Turing-Architecture-Whitepaper.pdf)",
          exclude=_MOBILE),
    _spec("NVIDIA TITAN V", "titan v", 14.9e12, None, None, 110e12,
          "NVIDIA TITAN V product page: 5120 CUDA cores x 1455 MHz boost x 2 = 14.9 TFLOPS FP32, "
          "110 deep-learning (tensor) TFLOPS (https://www.nvidia.com/en-us/titan/titan-v/)"),
    _spec("NVIDIA TITAN Xp", "titan xp", 3840 * 1582e6 * 2, None, None, None,
          "NVIDIA TITAN Xp product page: 3840 CUDA cores x 1582 MHz boost x 2 "
          "(https://www.nvidia.com/en-us/titan/titan-xp/); no fp16 figure given"),
    _spec("NVIDIA TITAN X (Pascal)", "titan x", 3584 * 1531e6 * 2, None, None, None,
          "NVIDIA TITAN X (Pascal) product page: 3584 CUDA cores x 1531 MHz boost x 2 "
          "(https://www.nvidia.com/en-us/geforce/products/10series/titan-x-pascal/); the Maxwell "
          "'GeForce GTX TITAN X' is a different part and is not in this table",
          exclude="gtx maxwell"),
    _spec("NVIDIA GeForce GTX 1080 Ti", "1080 ti", 3584 * 1582e6 * 2, None, None, None,
          "NVIDIA GeForce GTX 1080 Ti specifications: 3584 CUDA cores x 1582 MHz boost x 2 "
          "(https://www.nvidia.com/en-gb/geforce/products/10series/geforce-gtx-1080-ti/specifications/)",
          exclude=_MOBILE),
    _spec("NVIDIA GeForce GTX 1080", "1080", 2560 * 1733e6 * 2, None, None, None,
          "NVIDIA GeForce GTX 1080 specifications: 2560 CUDA cores x 1733 MHz boost x 2 "
          "(https://www.nvidia.com/en-gb/geforce/products/10series/geforce-gtx-1080/)",
          exclude="ti " + _MOBILE),
    # ---------------------------------------------------------------- Pascal / Maxwell / Kepler data centre
    _spec("NVIDIA P100 SXM2", "p100 sxm2", 10.6e12, None, None, 21.2e12,
          "NVIDIA Tesla P100 datasheet, NVLink (SXM2) column "
          "(https://images.nvidia.com/content/tesla/pdf/nvidia-tesla-p100-datasheet.pdf)",
          exclude="pcie"),
    _spec("NVIDIA P100 PCIe", "p100 pcie", 9.3e12, None, None, 18.7e12,
          "NVIDIA Tesla P100 datasheet, PCIe column "
          "(https://images.nvidia.com/content/tesla/pdf/nvidia-tesla-p100-PCIe-datasheet.pdf)",
          exclude="sxm2"),
    _spec("NVIDIA P40", "p40", 12e12, None, None, None,
          "NVIDIA Tesla P40 datasheet, single precision "
          "(https://images.nvidia.com/content/pdf/tesla/184427-Tesla-P40-Datasheet-NV-Final-Letter-Web.pdf)"),
    _spec("NVIDIA M40", "m40", 7e12, None, None, None,
          "NVIDIA Tesla M40 datasheet, single precision with boost "
          "(https://images.nvidia.com/content/tesla/pdf/tesla-m40-product-brief.pdf)"),
    _spec("NVIDIA K80 (one GK210)", "k80", 8.73e12 / 2, None, None, None,
          "NVIDIA Tesla K80 datasheet: 8.73 TFLOPS single precision with GPU Boost per board of two "
          "GK210 GPUs, halved because torch sees each GK210 as one device "
          "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-product-literature/Tesla-K80-BoardSpec-07317-001-v05.pdf)"),
    _spec("NVIDIA K40", "", 4.29e12, None, None, None,
          "NVIDIA Tesla K40 datasheet, peak single precision (base clock) "
          "(https://www.nvidia.com/content/PDF/kepler/Tesla-K40-Active-Board-Spec-BD-06949-001_v03.pdf)",
          any_of="k40 k40c k40m k40s k40t"),
    _spec("NVIDIA K20X", "", 3.95e12, None, None, None,
          "NVIDIA Tesla K20X datasheet, peak single precision "
          "(https://www.nvidia.com/content/PDF/kepler/Tesla-K20X-BD-06397-001-v07.pdf)",
          any_of="k20x k20xm"),
    _spec("NVIDIA K20", "", 3.52e12, None, None, None,
          "NVIDIA Tesla K20 datasheet, peak single precision "
          "(https://www.nvidia.com/content/PDF/kepler/Tesla-K20-Passive-BD-06455-001-v07.pdf)",
          any_of="k20 k20c k20m"),
    # ---------------------------------------------------------------- TPUs (per 4-chip Cloud TPU device)
    _spec("Google Cloud TPU v2 (v2-8, 4 chips)", "tpu v2", None, None, 180e12, None,
          "Google Cloud TPU system architecture docs: 45 TFLOPS bf16 per v2 chip, 180 per "
          "4-chip v2-8 device (https://cloud.google.com/tpu/docs/system-architecture-tpu-vm)"),
    _spec("Google Cloud TPU v3 (v3-8, 4 chips)", "tpu v3", None, None, 420e12, None,
          "Google Cloud TPU system architecture docs: 420 TFLOPS bf16 per 4-chip v3-8 device "
          "(123 per chip) (https://cloud.google.com/tpu/docs/system-architecture-tpu-vm)"),
    _spec("Google Cloud TPU v4 (v4-8, 4 chips)", "tpu v4", None, None, 4 * 275e12, None,
          "Google Cloud TPU v4 docs: 275 TFLOPS bf16 per chip x 4 chips per v4-8 device "
          "(https://cloud.google.com/tpu/docs/v4)"),
)
# fmt: on

# Words that carry no identity (vendor and brand prefixes).
_NOISE = {"nvidia", "tesla", "geforce", "quadro", "google", "cloud", "gpu", "graphics", "corporation"}


def _tokens(name: str) -> set[str]:
    """Lowercase word tokens of a device name, with '32 GB' folded into '32gb'."""
    text = name.lower()
    text = re.sub(r"(\d+)\s*gb\b", r"\1gb", text)
    # "V100-SXM2-16GB" -> v100 sxm2 16gb; "TITAN X (Pascal)" -> titan x pascal
    words = set(re.split(r"[^a-z0-9]+", text)) - {""}
    return words - _NOISE


def match_device(device_name: str) -> list[DeviceSpec]:
    """All table rows whose tokens match ``device_name`` (0, 1 or, if ambiguous, more)."""
    tokens = _tokens(device_name)
    return [
        spec
        for spec in PEAK_TABLE
        if spec.require <= tokens
        and (not spec.any_of or spec.any_of & tokens)
        and not spec.exclude & tokens
    ]


def normalize_dtype(dtype: str) -> str | None:
    """Map ``float32``/``bf16-mixed``/``half``... onto the table keys; None if unknown."""
    return _DTYPE_ALIASES.get(str(dtype).strip().lower().removeprefix("torch."))


def datasheet_peak(device_name: str, dtype: str) -> PeakEntry | None:
    """Dense datasheet peak for a device and dtype.

    Args:
        device_name: E.g. ``torch.cuda.get_device_name()`` or a literature hardware name.
        dtype: ``fp32``, ``tf32``, ``bf16`` or ``fp16`` (torch names such as ``bfloat16`` are
            accepted too).

    Returns:
        The entry, or None with a ``warnings.warn`` when the device is unknown or ambiguous
        (CPUs included), the dtype is unknown, or the device has no figure for that dtype.
    """
    key = normalize_dtype(dtype)
    if key is None:
        warnings.warn(f"datasheet_peak: unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}", stacklevel=2)
        return None
    matches = match_device(device_name)
    if not matches:
        warnings.warn(f"datasheet_peak: no datasheet entry for device {device_name!r}; peak is null", stacklevel=2)
        return None
    if len(matches) > 1:
        names = ", ".join(m.device for m in matches)
        warnings.warn(f"datasheet_peak: device {device_name!r} is ambiguous ({names}); peak is null", stacklevel=2)
        return None
    spec = matches[0]
    value = spec.flops_per_s[key]
    if value is None:
        warnings.warn(f"datasheet_peak: {spec.device} has no {key} datasheet figure; peak is null", stacklevel=2)
        return None
    return PeakEntry(device=spec.device, dtype=key, flops_per_s=float(value), source=spec.source)


def datasheet_peaks(device_name: str) -> dict[str, float | None]:
    """Dense datasheet peak for every dtype in :data:`DTYPES`, None where unknown.

    Warns once (not once per dtype) when the device is not in the table.
    """
    matches = match_device(device_name)
    if len(matches) != 1:
        warnings.warn(
            f"datasheet_peaks: no unique datasheet entry for device {device_name!r}; peaks are null",
            stacklevel=2,
        )
        return {d: None for d in DTYPES}
    return {d: (float(v) if v is not None else None) for d, v in matches[0].flops_per_s.items()}
