"""Executed FLOPs from hardware counters with Nsight Compute (``ncu``), NVIDIA GPUs only.

Method:
    1. A child process (``python -m kernels.ncu target ...``) runs the operation once to warm
       up, then once more between ``cudaProfilerStart``/``cudaProfilerStop``.
    2. The parent runs that child under ``ncu --profile-from-start off --csv --page raw
       --print-units base --metrics ...``, so only the second call's kernels are counted.
    3. The per-kernel counters are summed and turned into executed FLOPs:
       - CUDA cores, FP32: ``2 * FFMA + FADD + FMUL`` thread instructions
         (``smsp__sass_thread_inst_executed_op_{ffma,fadd,fmul}_pred_on.sum``; the same formula
         as ncu's own ``SpeedOfLight_RooflineChart.section``, an FMA being 2 FLOPs);
       - CUDA cores, FP16: ``2 * HFMA + HADD + HMUL`` (likwid's ``FLOPS_HP`` group formula);
       - tensor cores: ``sm__ops_path_tensor_src_{fp16,bf16,tf32}_dst_fp32.sum``, "math ops
         executed in the tensor path" (``ncu --query-metrics``). Whether one op there is a FLOP
         or a multiply-add is not stated in the metric description; the ratio to the
         analytic count (1.0 or 0.5) settles it on the first run and is recorded as is.
       ``sm__inst_executed_pipe_tensor.sum`` (warp-level tensor instructions) is kept too.
    4. These are compared with the analytic count (2·m·n·k) and with ``FlopCounterMode``;
       the ratios go into the profile under ``ncu_flop_check``.

Cases: a GEMM per dtype, and one training step (forward, backward, SGD update) of a small MLP.
Without CUDA or without an ``ncu`` binary the check is skipped with the reason recorded;
nothing else in ``python -m kernels`` depends on it.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
import sys
from typing import Any

import torch

__all__ = [
    "NCU_METRICS",
    "ncu_unavailable_reason",
    "parse_ncu_csv",
    "flops_from_metrics",
    "mlp_train_step_flops",
    "counted_flops",
    "run_ncu_check",
]

NCU_METRICS: tuple[str, ...] = (
    "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "smsp__sass_thread_inst_executed_op_fadd_pred_on.sum",
    "smsp__sass_thread_inst_executed_op_fmul_pred_on.sum",
    "smsp__sass_thread_inst_executed_op_hfma_pred_on.sum",
    "smsp__sass_thread_inst_executed_op_hadd_pred_on.sum",
    "smsp__sass_thread_inst_executed_op_hmul_pred_on.sum",
    "sm__inst_executed_pipe_tensor.sum",
    "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
    "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
)

# Small MLP for the training-step case: widths of its Linear layers, and the batch.
MLP_WIDTHS: tuple[int, ...] = (1024, 4096, 1024)
MLP_BATCH = 512


def ncu_unavailable_reason(binary: str = "ncu") -> str | None:
    """None when the check can run here, else why not (one line)."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    if shutil.which(binary) is None:
        return f"Nsight Compute binary {binary!r} not found on PATH"
    return None


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    if not text or text.lower() in {"n/a", "nan", "-"}:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_ncu_csv(text: str, metrics: tuple[str, ...] = NCU_METRICS) -> tuple[dict[str, float | None], int]:
    """Sum each metric over the kernels in ``ncu --csv --page raw`` output.

    Lines not starting with a quote (``==PROF==`` messages, the program's own output) are
    dropped; the units row (non-numeric ``ID``) is skipped. A metric the GPU does not have
    (e.g. bf16 tensor ops on Volta) stays None.

    Returns:
        (metric sums, number of kernels profiled)
    """
    rows = [line for line in text.splitlines() if line.startswith('"')]
    reader = csv.DictReader(io.StringIO("\n".join(rows)))
    sums: dict[str, float | None] = {m: None for m in metrics}
    num_kernels = 0
    for row in reader:
        if _number(row.get("ID", "")) is None:
            continue  # units row
        num_kernels += 1
        for metric in metrics:
            value = _number(row.get(metric, ""))
            if value is not None:
                sums[metric] = (sums[metric] or 0.0) + value
    return sums, num_kernels


def flops_from_metrics(metrics: dict[str, float | None]) -> dict[str, float | None]:
    """Executed FLOPs from summed counters (see the module docstring for the formulas)."""

    def get(name: str) -> float:
        return metrics.get(f"smsp__sass_thread_inst_executed_op_{name}_pred_on.sum") or 0.0

    tensor_keys = [f"sm__ops_path_tensor_src_{t}_dst_fp32.sum" for t in ("fp16", "bf16", "tf32")]
    tensor_values = [metrics.get(k) for k in tensor_keys]
    tensor_ops = sum(v for v in tensor_values if v is not None) if any(v is not None for v in tensor_values) else None
    fp32 = 2 * get("ffma") + get("fadd") + get("fmul")
    fp16 = 2 * get("hfma") + get("hadd") + get("hmul")
    return {
        "cuda_core_fp32_flops": fp32,
        "cuda_core_fp16_flops": fp16,
        "tensor_path_ops": tensor_ops,
        "tensor_instructions": metrics.get("sm__inst_executed_pipe_tensor.sum"),
        "executed_flops": fp32 + fp16 + (tensor_ops or 0.0),
    }


def _build_mlp(device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(MLP_WIDTHS[:-1], MLP_WIDTHS[1:])):
        layers.append(torch.nn.Linear(w_in, w_out, bias=False))
        if i < len(MLP_WIDTHS) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device=device, dtype=dtype)
    x = torch.randn(MLP_BATCH, MLP_WIDTHS[0], device=device, dtype=dtype)
    y = torch.randn(MLP_BATCH, MLP_WIDTHS[-1], device=device, dtype=dtype)
    return model, x, y


def mlp_train_step_flops() -> int:
    """Analytic matmul FLOPs of one training step of the MLP (elementwise ops not counted).

    Forward 2·B·in·out per layer; backward computes the weight gradient of every layer
    (2·B·in·out) and the input gradient of every layer but the first, whose input needs none.
    """
    pairs = list(zip(MLP_WIDTHS[:-1], MLP_WIDTHS[1:]))
    per_layer = [2 * MLP_BATCH * i * o for i, o in pairs]
    return sum(per_layer) * 2 + sum(per_layer[1:])


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-1e-3)
            p.grad = None


def _target(argv: list[str]) -> None:
    """Child process: warm up, then run the case once inside the profiler range."""
    from kernels.ops import GemmShape, TORCH_DTYPES, build_gemm, precision_mode

    parser = argparse.ArgumentParser(prog="python -m kernels.ncu target")
    parser.add_argument("--case", choices=["gemm", "train_step"], required=True)
    parser.add_argument("--dtype", choices=list(TORCH_DTYPES), required=True)
    parser.add_argument("--shape", type=int, nargs=3, default=[4096, 4096, 4096])
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    with precision_mode(args.dtype, device):
        if args.case == "gemm":
            fn = build_gemm(GemmShape(*args.shape), args.dtype, device)
        else:
            model, x, y = _build_mlp(device, TORCH_DTYPES[args.dtype])

            def fn() -> None:
                _train_step(model, x, y)

        fn()
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        fn()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def counted_flops(case: str, dtype: str, shape: list[int], device: str | torch.device = "cuda") -> int:
    """FlopCounterMode's count of the same case (2 FLOPs per multiply-add).

    ``device="meta"`` counts without running anything.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from kernels.ops import TORCH_DTYPES, GemmShape, build_gemm

    device = torch.device(device)
    if case == "gemm":
        fn = build_gemm(GemmShape(*shape), dtype, device)
    else:
        model, x, y = _build_mlp(device, TORCH_DTYPES[dtype])

        def fn() -> None:
            _train_step(model, x, y)

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _ncu_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def run_ncu_check(
    binary: str = "ncu",
    gemm_shape: list[int] | tuple[int, int, int] = (4096, 4096, 4096),
    dtypes: list[str] | tuple[str, ...] = ("fp32", "bf16"),
    train_step: bool = True,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run the ncu cross-check; returns the ``ncu_flop_check`` record for the profile.

    Returns ``{"status": "skipped", "reason": ...}`` without CUDA or ncu, and a per-case
    ``status`` of ``failed`` (with ncu's message) when profiling fails, e.g. without
    permission to read GPU counters (ERR_NVGPUCTRPERM).
    """
    from kernels.ops import GemmShape, gemm_flops

    reason = ncu_unavailable_reason(binary)
    if reason:
        return {"status": "skipped", "reason": reason}
    cases: list[dict[str, Any]] = []
    plan = [("gemm", d) for d in dtypes] + ([("train_step", d) for d in dtypes] if train_step else [])
    for case, dtype in plan:
        shape = list(gemm_shape)
        analytic = gemm_flops(GemmShape(*shape)) if case == "gemm" else mlp_train_step_flops()
        command = [
            binary, "--profile-from-start", "off", "--target-processes", "all", "--csv", "--page", "raw",
            "--print-units", "base", "--metrics", ",".join(NCU_METRICS),
            sys.executable, "-m", "kernels.ncu", "target", "--case", case, "--dtype", dtype,
            "--shape", *map(str, shape),
        ]
        record: dict[str, Any] = {
            "case": case,
            "dtype": dtype,
            "shape": {"m": shape[0], "n": shape[1], "k": shape[2]} if case == "gemm"
            else {"widths": list(MLP_WIDTHS), "batch": MLP_BATCH},
            "analytic_flops": analytic,
        }
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            cases.append({**record, "status": "failed", "reason": f"ncu timed out after {timeout_s} s"})
            continue
        metrics, num_kernels = parse_ncu_csv(proc.stdout)
        if proc.returncode != 0 or num_kernels == 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            cases.append({**record, "status": "failed", "reason": " | ".join(tail) or f"ncu exit {proc.returncode}"})
            continue
        flops = flops_from_metrics(metrics)
        counted = counted_flops(case, dtype, shape)
        cases.append({
            **record,
            "status": "ok",
            "num_kernels": num_kernels,
            "flop_counter_flops": counted,
            "metrics": metrics,
            **flops,
            "ratio_executed_to_analytic": flops["executed_flops"] / analytic if analytic else None,
            "ratio_tensor_ops_to_analytic": (flops["tensor_path_ops"] / analytic)
            if flops["tensor_path_ops"] is not None and analytic else None,
            "ratio_cuda_core_fp32_to_analytic": flops["cuda_core_fp32_flops"] / analytic if analytic else None,
        })
    return {
        "status": "ok" if any(c["status"] == "ok" for c in cases) else "failed",
        "ncu_version": _ncu_version(binary),
        "device_name": torch.cuda.get_device_name(),
        "metrics": list(NCU_METRICS),
        "cases": cases,
    }


if __name__ == "__main__":  # pragma: no cover - exercised only under ncu on a GPU
    if len(sys.argv) > 1 and sys.argv[1] == "target":
        _target(sys.argv[2:])
    else:
        import json

        print(json.dumps(run_ncu_check(), indent=2))
