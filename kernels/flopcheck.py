"""Cross-check of the analytic FLOP counts against fvcore and ``FlopCounterMode``.

The two counters use different units, and this module is where that is pinned down:

- fvcore (``FlopCountAnalysis``) counts one multiply-add as one "flop", i.e. it counts MACs
  (fvcore docs, "flop_count": "we count one fused multiply-add as one flop").
- ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add
  (``mm_flop`` returns ``m * n * 2 * k``).
- The project convention (DESIGN.md) is 2 FLOPs per multiply-add, so
  ``analytic_flops == flop_counter_flops == 2 * fvcore_macs`` for every op here.

A copy does no arithmetic: analytic 0 FLOPs, and both counters agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from kernels.ops import (
    TORCH_DTYPES,
    Conv2dShape,
    GemmShape,
    build_conv2d,
    build_gemm,
    conv2d_flops,
    gemm_flops,
    precision_mode,
)

__all__ = ["FlopCheck", "count_fvcore_macs", "count_flop_counter_flops", "check_gemm", "check_conv2d", "check_copy"]


@dataclass(frozen=True)
class FlopCheck:
    """Counts of one operation under the three conventions.

    Attributes:
        op: ``gemm``, ``conv2d`` or ``copy``.
        shape: The operation's shape.
        analytic_flops: From the shape, 2 FLOPs per multiply-add.
        fvcore_macs: fvcore's total (1 per multiply-add).
        flop_counter_flops: ``FlopCounterMode`` total (2 per multiply-add).
    """

    op: str
    shape: dict
    analytic_flops: int
    fvcore_macs: int
    flop_counter_flops: int

    @property
    def agrees(self) -> bool:
        """True when both counters match the analytic count under their own convention."""
        return self.flop_counter_flops == self.analytic_flops and 2 * self.fvcore_macs == self.analytic_flops

    def as_dict(self) -> dict:
        d = asdict(self)
        d["agrees"] = self.agrees
        d["convention"] = "analytic and flop_counter: 2 FLOPs per multiply-add; fvcore: 1 per multiply-add (MACs)"
        return d


class _Call(nn.Module):
    """Wraps a functional op so fvcore (which traces a Module) can count it."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)


def count_fvcore_macs(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> int:
    """fvcore's total for ``fn(*inputs)``: multiply-adds (fvcore calls them flops)."""
    with warnings.catch_warnings():
        # fvcore uses torch.jit, which newer torch marks deprecated; not our concern here.
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(_Call(fn), inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())


def count_flop_counter_flops(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> int:
    """``FlopCounterMode``'s total for ``fn(*inputs)``: 2 FLOPs per multiply-add."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return int(counter.get_total_flops())


def check_gemm(shape: GemmShape, dtype: str = "fp32", device: str | torch.device = "cpu") -> FlopCheck:
    """Count the benchmark's GEMM of ``shape`` both ways (runs it twice on ``device``).

    ``FlopCounterMode`` counts the exact benchmark callable (``torch.matmul(a, b, out=c)``).
    fvcore's matmul handle rejects the ``out=`` form (it asserts two inputs), so fvcore
    counts the same product without ``out=``.
    """
    device = torch.device(device)
    with precision_mode(dtype, device):
        a = torch.randn(shape.m, shape.k, device=device).to(TORCH_DTYPES[dtype])
        b = torch.randn(shape.k, shape.n, device=device).to(TORCH_DTYPES[dtype])
        return FlopCheck(
            op="gemm",
            shape=shape.as_dict(),
            analytic_flops=gemm_flops(shape),
            fvcore_macs=count_fvcore_macs(torch.matmul, a, b),
            flop_counter_flops=count_flop_counter_flops(build_gemm(shape, dtype, device)),
        )


def check_conv2d(shape: Conv2dShape, dtype: str = "fp32", device: str | torch.device = "cpu") -> FlopCheck:
    """Count the benchmark's convolution of ``shape`` both ways (runs it twice on ``device``)."""
    device = torch.device(device)
    x = torch.randn(shape.batch, shape.in_channels, shape.height, shape.width, device=device).to(TORCH_DTYPES[dtype])
    w = torch.randn(shape.out_channels, shape.in_channels, shape.kernel_size, shape.kernel_size, device=device)
    w = w.to(TORCH_DTYPES[dtype])

    def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, stride=shape.stride, padding=shape.padding)

    with precision_mode(dtype, device):
        return FlopCheck(
            op="conv2d",
            shape=shape.as_dict(),
            analytic_flops=conv2d_flops(shape),
            fvcore_macs=count_fvcore_macs(conv, x, w),
            flop_counter_flops=count_flop_counter_flops(build_conv2d(shape, dtype, device)),
        )


def check_copy(numel: int, device: str | torch.device = "cpu") -> FlopCheck:
    """Count a tensor copy both ways: a bandwidth op, 0 FLOPs."""
    src = torch.ones(numel, device=device)
    dst = torch.empty_like(src)

    def copy(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return dst.copy_(src)

    return FlopCheck(
        op="copy",
        shape={"numel": numel},
        analytic_flops=0,
        fvcore_macs=count_fvcore_macs(copy, dst, src),
        flop_counter_flops=count_flop_counter_flops(copy, dst, src),
    )
