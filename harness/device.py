"""Which device a run uses, and what it is.

``resolve_device`` turns ``device=`` into a torch device (one-line errors); ``device_info`` is the
identity fields of ``result.json``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from harness.errors import UserError

#: trainer.precision -> the dtype key of the peak tables.
PRECISION_DTYPES = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16"}


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device={spec!r} but torch sees no CUDA device; valid choices here: auto, cpu")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise UserError(f"device={spec!r} is invalid; valid choices: auto, cpu, cuda, cuda:N")


def device_info(device: torch.device) -> dict[str, Any]:
    from kernels.device import device_name

    on_cuda = device.type == "cuda"
    return {
        "device_type": device.type,
        "device_name": device_name(device),
        "num_devices": 1,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if on_cuda else None,
    }


def to_device(x: Optional[torch.Tensor], device: torch.device) -> Optional[torch.Tensor]:
    """A host tensor moved to ``device`` for a batch. On CUDA it goes through page-locked (pinned)
    memory with a non-blocking copy, so the copy is a DMA on the stream and the host thread goes on
    building the next batch (a non-blocking copy from pageable memory is a synchronous staged copy;
    CUDA C++ Programming Guide, "Page-Locked Host Memory"). PyTorch's caching host allocator keeps
    the pinned block until the copy has run. Elsewhere, or for a tensor already on a device, a plain
    ``.to``. ``None`` stays ``None``."""
    if x is None:
        return None
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
