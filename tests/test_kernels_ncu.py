"""Nsight Compute cross-check: parsing and arithmetic on CPU; the real run only on a GPU with ncu."""

from __future__ import annotations

import shutil

import pytest
import torch

from kernels.ncu import (
    NCU_METRICS,
    flops_from_metrics,
    mlp_train_step_flops,
    ncu_unavailable_reason,
    parse_ncu_csv,
    run_ncu_check,
)

FFMA, FADD, FMUL = NCU_METRICS[0], NCU_METRICS[1], NCU_METRICS[2]
TENSOR_BF16 = "sm__ops_path_tensor_src_bf16_dst_fp32.sum"


def _fake_ncu_stdout() -> str:
    cols = ["ID", "Process ID", "Kernel Name", FFMA, FADD, FMUL, TENSOR_BF16]
    quote = lambda values: ",".join(f'"{v}"' for v in values)  # noqa: E731
    return "\n".join(
        [
            "==PROF== Connected to process 4242 (python)",
            quote(cols),
            quote(["", "", "", "inst", "inst", "inst", ""]),  # units row
            quote(["0", "4242", "sgemm_a", "1,000", "10", "5", "n/a"]),
            "program output that is not CSV",
            quote(["1", "4242", "sgemm_b", "2000", "0", "0", "64"]),
            "==PROF== Disconnected from process 4242",
        ]
    )


def test_parse_ncu_csv_sums_kernels_and_skips_noise() -> None:
    sums, num_kernels = parse_ncu_csv(_fake_ncu_stdout())
    assert num_kernels == 2
    assert sums[FFMA] == 3000 and sums[FADD] == 10 and sums[FMUL] == 5
    assert sums[TENSOR_BF16] == 64  # "n/a" in one kernel is skipped, not zero
    assert sums["sm__ops_path_tensor_src_tf32_dst_fp32.sum"] is None  # absent metric stays null


def test_flops_from_metrics_fma_counts_twice() -> None:
    flops = flops_from_metrics({FFMA: 100.0, FADD: 7.0, FMUL: 3.0})
    assert flops["cuda_core_fp32_flops"] == 2 * 100 + 7 + 3
    assert flops["tensor_path_ops"] is None  # no tensor counters: null, not 0
    assert flops["executed_flops"] == 210
    with_tensor = flops_from_metrics({FFMA: 0.0, TENSOR_BF16: 4096.0})
    assert with_tensor["tensor_path_ops"] == 4096 and with_tensor["executed_flops"] == 4096


def test_parse_empty_output() -> None:
    sums, num_kernels = parse_ncu_csv("==ERROR== ERR_NVGPUCTRPERM - no permission to access counters\n")
    assert num_kernels == 0 and all(v is None for v in sums.values())


def test_skips_cleanly_without_gpu_or_ncu() -> None:
    if torch.cuda.is_available() and shutil.which("ncu"):
        pytest.skip("this machine can run ncu; see the gpu test")
    reason = ncu_unavailable_reason()
    assert reason
    assert run_ncu_check() == {"status": "skipped", "reason": reason}
    assert ncu_unavailable_reason("definitely-not-ncu-binary")


@pytest.mark.gpu
def test_ncu_flop_cross_check_on_gpu() -> None:
    """Executed FLOPs from hardware counters against 2·m·n·k (needs CUDA, ncu and counter access)."""
    if shutil.which("ncu") is None:
        pytest.skip("ncu not on PATH")
    result = run_ncu_check(gemm_shape=(2048, 2048, 2048), dtypes=("fp32", "bf16"), train_step=True, timeout_s=300)
    failed = [c for c in result["cases"] if c["status"] != "ok"]
    if failed and all("ERR_NVGPUCTRPERM" in c.get("reason", "") for c in failed):
        pytest.skip("no permission to read GPU performance counters (ERR_NVGPUCTRPERM)")
    assert result["status"] == "ok", result
    by_case = {(c["case"], c["dtype"]): c for c in result["cases"]}
    fp32 = by_case[("gemm", "fp32")]
    # FP32 SGEMM with TF32 off runs on CUDA cores: FFMA count x 2 is the analytic count, within
    # the small extra work of epilogues (alpha/beta scaling).
    assert fp32["ratio_cuda_core_fp32_to_analytic"] == pytest.approx(1.0, rel=0.05)
    bf16 = by_case[("gemm", "bf16")]
    # Tensor-path ops are either FLOPs (ratio 1) or multiply-adds (ratio 0.5); either is a finding.
    assert bf16["ratio_tensor_ops_to_analytic"] == pytest.approx(1.0, rel=0.05) or bf16[
        "ratio_tensor_ops_to_analytic"
    ] == pytest.approx(0.5, rel=0.05)
    step = by_case[("train_step", "fp32")]
    assert step["analytic_flops"] == mlp_train_step_flops() == step["flop_counter_flops"]
