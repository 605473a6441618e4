"""The micro-benchmark operations, and their analytic FLOP and byte counts.

Convention: 1 multiply-add = 2 FLOPs (DESIGN.md). Bytes are the minimum traffic to and from
memory: each operand read once and the result written once (the denominator of arithmetic
intensity in the roofline model, Williams, Waterman and Patterson, CACM 52(4), 2009).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "TORCH_DTYPES",
    "GemmShape",
    "Conv2dShape",
    "gemm_flops",
    "gemm_bytes",
    "conv2d_flops",
    "conv2d_bytes",
    "copy_bytes",
    "precision_mode",
    "build_gemm",
    "build_conv2d",
    "build_copy",
    "build_host_to_device",
]

#: Storage dtype of each benchmark dtype. TF32 is FP32 storage with TF32 tensor-core math.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class GemmShape:
    """C[m, n] = A[m, k] @ B[k, n]."""

    m: int
    n: int
    k: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.m}x{self.n}x{self.k}"


@dataclass(frozen=True)
class Conv2dShape:
    """A 2-D convolution layer, NCHW, square kernel, no bias, groups=1."""

    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width (PyTorch Conv2d docs formula, dilation 1)."""
        h = (self.height + 2 * self.padding - self.kernel_size) // self.stride + 1
        w = (self.width + 2 * self.padding - self.kernel_size) // self.stride + 1
        return h, w

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"n{self.batch} c{self.in_channels}->{self.out_channels} {self.height}x{self.width} "
            f"k{self.kernel_size} s{self.stride}"
        )


def gemm_flops(shape: GemmShape) -> int:
    """2·m·n·k: m·n outputs, each k multiply-adds of 2 FLOPs."""
    return 2 * shape.m * shape.n * shape.k


def gemm_bytes(shape: GemmShape, itemsize: int) -> int:
    """Read A and B once, write C once."""
    return (shape.m * shape.k + shape.k * shape.n + shape.m * shape.n) * itemsize


def conv2d_flops(shape: Conv2dShape) -> int:
    """2·N·C_out·H_out·W_out·C_in·k_h·k_w (direct convolution, no bias).

    Each output element is a dot product of length C_in·k_h·k_w. Winograd or FFT algorithms
    do fewer multiplications; this is the nominal count every FLOP counter uses.
    """
    h, w = shape.out_hw
    macs = shape.batch * shape.out_channels * h * w * shape.in_channels * shape.kernel_size**2
    return 2 * macs


def conv2d_bytes(shape: Conv2dShape, itemsize: int) -> int:
    """Read input and weight once, write output once."""
    h, w = shape.out_hw
    numel = (
        shape.batch * shape.in_channels * shape.height * shape.width
        + shape.out_channels * shape.in_channels * shape.kernel_size**2
        + shape.batch * shape.out_channels * h * w
    )
    return numel * itemsize


def copy_bytes(numel: int, itemsize: int) -> int:
    """A copy reads every byte once and writes it once: 2 × size (STREAM "Copy" convention,
    McCalpin, https://www.cs.virginia.edu/stream/ref.html)."""
    return 2 * numel * itemsize


@contextlib.contextmanager
def precision_mode(dtype: str, device: torch.device) -> Iterator[None]:
    """Set TF32 on for ``tf32`` and off for everything else, restoring the old flags.

    PyTorch's default lets cuDNN use TF32 for FP32 convolutions; FP32 must mean true FP32
    here, so both the cuBLAS and cuDNN flags are set explicitly
    (https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices).
    """
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype={dtype!r}; valid: {', '.join(TORCH_DTYPES)}")
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    old_precision = torch.get_float32_matmul_precision()
    tf32 = dtype == "tf32"
    try:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn
        torch.set_float32_matmul_precision(old_precision)


def _randn(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # Generated in fp32 on the CPU, so the values do not depend on the device's RNG.
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def build_gemm(shape: GemmShape, dtype: str, device: torch.device) -> Callable[[], torch.Tensor]:
    """``torch.matmul(a, b, out=c)`` on preallocated operands: the cuBLAS/oneDNN GEMM and
    nothing else (no allocation inside the timed call)."""
    tdtype = TORCH_DTYPES[dtype]
    a = _randn((shape.m, shape.k), tdtype, device, 0)
    b = _randn((shape.k, shape.n), tdtype, device, 1)
    c = torch.empty((shape.m, shape.n), dtype=tdtype, device=device)

    def gemm() -> torch.Tensor:
        return torch.matmul(a, b, out=c)

    return gemm


def build_conv2d(
    shape: Conv2dShape, dtype: str, device: torch.device, *, channels_last: bool = True
) -> Callable[[], torch.Tensor]:
    """``F.conv2d`` forward on preallocated input and weight.

    ``channels_last`` (NHWC) is the layout tensor-core and oneDNN convolutions prefer
    (https://pytorch.org/tutorials/intermediate/memory_format_tutorial.html).
    """
    tdtype = TORCH_DTYPES[dtype]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = _randn((shape.batch, shape.in_channels, shape.height, shape.width), tdtype, device, 2)
    w = _randn((shape.out_channels, shape.in_channels, shape.kernel_size, shape.kernel_size), tdtype, device, 3)
    x = x.contiguous(memory_format=fmt)
    w = w.contiguous(memory_format=fmt)

    def conv() -> torch.Tensor:
        return F.conv2d(x, w, stride=shape.stride, padding=shape.padding)

    return conv


def build_copy(num_bytes: int, device: torch.device) -> tuple[Callable[[], torch.Tensor], int]:
    """Device-to-device copy of a ``num_bytes`` buffer (fp32); returns the op and its numel."""
    numel = max(1, num_bytes // 4)
    src = torch.ones(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)

    def copy() -> torch.Tensor:
        return dst.copy_(src)

    return copy, numel


def build_host_to_device(
    num_bytes: int, device: torch.device, *, pinned: bool = True
) -> tuple[Callable[[], torch.Tensor], int]:
    """Host-to-device copy of ``num_bytes`` (fp32) from pinned (page-locked) host memory,
    the path a DataLoader with ``pin_memory=True`` takes."""
    numel = max(1, num_bytes // 4)
    src = torch.ones(numel, dtype=torch.float32)
    if pinned:
        src = src.pin_memory()
    dst = torch.empty(numel, dtype=torch.float32, device=device)

    def h2d() -> torch.Tensor:
        return dst.copy_(src, non_blocking=pinned)

    return h2d, numel
