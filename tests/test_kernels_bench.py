"""The micro-benchmark suite, the profile it builds, its views, and `python -m kernels`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from kernels.bench import build_profile, measure_gemm, resolve_device, run_suite
from kernels.config import ConfigError, KernelsConfig, SweepConfig, TimingConfig, register_configs, validate
from kernels.device import device_name
from kernels.ops import GemmShape, build_gemm, precision_mode
from kernels.peaks import DTYPES
from kernels.profile import REQUIRED_KEYS, load_profile, profile_path
from kernels.report import format_table, plot_roofline
from kernels.timing import Timing, _quantile, time_op

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
FAST = TimingConfig(num_warmup=1, num_repeats=3, min_repeat_s=0.0, max_call_s=2.0)


def _tiny_cfg(out_dir: Path) -> KernelsConfig:
    cfg = KernelsConfig(device="cpu", out_dir=str(out_dir), plot=True)
    cfg.quiet.max_attempts = 1  # tests judge the loop with fakes (test_kernels_profile.py), not real load
    cfg.cpu = SweepConfig(
        dtypes=["fp32", "bf16"], gemm_shapes=[[32, 32, 32], [64, 48, 16]], copy_bytes=2**16, timing=FAST
    )
    cfg.cpu.conv.batch, cfg.cpu.conv.in_channels, cfg.cpu.conv.out_channels = 1, 4, 4
    cfg.cpu.conv.height = cfg.cpu.conv.width = 8
    return cfg


# ---------------------------------------------------------------- timing


def test_quantile_and_spread() -> None:
    assert _quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    assert _quantile([1.0, 2.0], 0.5) == 1.5
    t = Timing(2.0, 1.0, 5.0, 0.5, 5, 1, 0, "perf_counter", (1.0, 2.0, 2.0, 2.5, 5.0))
    assert t.spread_rel == 0.25
    d = t.as_dict()
    assert d["time_median_s"] == 2.0 and d["spread_rel"] == 0.25 and d["timing_method"] == "perf_counter"


def test_time_op_counts_warmup_calibration_and_repeats() -> None:
    calls = []
    timing = time_op(lambda: calls.append(1), CPU, num_warmup=3, num_repeats=4, min_repeat_s=0.0)
    assert timing.num_inner == 1
    assert len(calls) == 3 + 1 + 4  # warm-up, calibration, repeats
    assert len(timing.repeats_s) == 4
    assert timing.min_s <= timing.median_s <= timing.max_s
    with pytest.raises(ValueError):
        time_op(lambda: None, CPU, num_repeats=0)


def test_time_op_loops_short_ops_to_min_repeat() -> None:
    timing = time_op(lambda: None, CPU, num_warmup=0, num_repeats=2, min_repeat_s=0.002, max_inner=500)
    assert 1 < timing.num_inner <= 500


def test_time_op_measures_time() -> None:
    import time

    timing = time_op(lambda: time.sleep(0.01), CPU, num_warmup=0, num_repeats=3, min_repeat_s=0.0)
    assert 0.009 < timing.median_s < 0.2


# ---------------------------------------------------------------- ops and suite


def test_gemm_op_is_correct_and_writes_in_place() -> None:
    fn = build_gemm(GemmShape(5, 3, 4), "fp32", CPU)
    out = fn()
    again = fn()
    assert out.shape == (5, 3) and out.data_ptr() == again.data_ptr()  # preallocated output


def test_precision_mode_restores_flags() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    with precision_mode("tf32", CPU):
        pass
    assert (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()) == before
    with pytest.raises(ValueError):
        with precision_mode("fp64", CPU):
            pass


def test_measure_gemm_record() -> None:
    rec = measure_gemm(GemmShape(32, 32, 32), "fp32", CPU, SweepConfig(timing=FAST))
    assert rec["flops"] == 2 * 32**3
    assert rec["flops_per_s"] == pytest.approx(rec["flops"] / rec["time_median_s"])
    assert rec["arithmetic_intensity_flops_per_byte"] == pytest.approx(2 * 32**3 / (3 * 32 * 32 * 4))


def test_suite_and_profile_on_cpu(tmp_path: Path) -> None:
    cfg = _tiny_cfg(tmp_path)
    records = run_suite(cfg, CPU)
    ops = [(r["op"], r["dtype"]) for r in records]
    assert ops.count(("gemm", "fp32")) == 2 and ops.count(("gemm", "bf16")) == 2
    assert ("conv2d", "fp32") in ops and ("conv2d", "bf16") in ops and ("copy", "fp32") in ops
    assert not any(op == "host_to_device" for op, _ in ops)  # CUDA only

    profile = build_profile(cfg, CPU, records)
    for key in REQUIRED_KEYS:
        assert key in profile
    assert profile["device_name"] == device_name(CPU)
    assert set(profile["achieved_flops_per_s"]) == set(DTYPES)
    gemm_fp32 = [r["flops_per_s"] for r in records if r["op"] == "gemm" and r["dtype"] == "fp32"]
    assert profile["achieved_flops_per_s"]["fp32"] == max(gemm_fp32)  # best shape, not conv
    assert profile["achieved_at"]["fp32"]["shape"] in ({"m": 32, "n": 32, "k": 32}, {"m": 64, "n": 48, "k": 16})
    # Not measured or unknown is null, never 0.
    assert profile["achieved_flops_per_s"]["tf32"] is None and profile["achieved_flops_per_s"]["fp16"] is None
    assert profile["datasheet_flops_per_s"] == {d: None for d in DTYPES}  # a CPU is not in the table
    assert profile["fraction_of_datasheet"] == {d: None for d in DTYPES}
    assert profile["bandwidth_bytes_per_s"]["host_to_device"] is None
    assert profile["bandwidth_bytes_per_s"]["device_copy"] > 0
    assert profile["versions"]["torch"] == torch.__version__ and profile["versions"]["cuda"] is None
    json.dumps(profile, allow_nan=False)  # serialisable as strict JSON

    table = format_table(profile)
    assert "fp32" in table and "bf16" in table and "tf32" not in table and "GB/s" in table
    png = plot_roofline(profile, tmp_path / "roof.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_max_call_s_stops_a_slow_dtype() -> None:
    cfg = _tiny_cfg(Path("/nonexistent"))
    cfg.cpu.dtypes = ["fp32"]
    cfg.cpu.timing = TimingConfig(num_warmup=0, num_repeats=1, min_repeat_s=0.0, max_call_s=1e-9)
    cfg.cpu.copy_bytes = 0
    records = run_suite(cfg, CPU)
    gemms = [r for r in records if r["op"] == "gemm"]
    assert gemms == [{"op": "gemm", "dtype": "fp32", "shape": {"m": 32, "n": 32, "k": 32}, "skipped": "max_call_s"}]
    assert build_profile(cfg, CPU, records)["achieved_flops_per_s"]["fp32"] is None


# ---------------------------------------------------------------- config


def test_compose_default_config_and_overrides() -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf" / "kernels"), version_base=None):
        cfg = compose(config_name="kernels", overrides=["out_dir=/tmp/x", "cpu.gemm_shapes=[[8,8,8]]"])
    assert cfg.out_dir == "/tmp/x" and list(cfg.cpu.gemm_shapes[0]) == [8, 8, 8]
    assert list(cfg.cpu.dtypes) == ["fp32", "bf16"]
    assert list(cfg.cuda.dtypes) == ["fp32", "tf32", "bf16", "fp16"]
    assert validate(cfg, "cpu").out_dir == "/tmp/x"


def test_compose_rejects_typos_and_types() -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf" / "kernels"), version_base=None):
        with pytest.raises(Exception):
            compose(config_name="kernels", overrides=["cpu.gemm_shape=[[8,8,8]]"])  # typo
        with pytest.raises(Exception):
            compose(config_name="kernels", overrides=["cpu.timing.num_repeats=many"])


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda c: setattr(c.cpu, "dtypes", ["tf32"]), "cpu.dtypes"),
        (lambda c: setattr(c.cpu, "gemm_shapes", [[8, 8]]), "cpu.gemm_shapes"),
        (lambda c: setattr(c.cpu, "gemm_shapes", []), "cpu.gemm_shapes"),
        (lambda c: setattr(c, "device", "gpu"), "device="),
        (lambda c: setattr(c, "num_threads", 0), "num_threads"),
        (lambda c: setattr(c.quiet, "max_attempts", 0), "quiet.max_attempts"),
        (lambda c: setattr(c.quiet, "max_spread_rel", 0.0), "quiet.max_spread_rel"),
        (lambda c: setattr(c.quiet, "max_other_cpu_share", 1.5), "quiet.max_other_cpu_share"),
        (lambda c: setattr(c.quiet, "wait_s", -1.0), "quiet.wait_s"),
    ],
)
def test_validate_one_line_errors(mutate, needle: str) -> None:
    cfg = _tiny_cfg(Path("/nonexistent"))
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        validate(cfg, "cpu")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):
            resolve_device("cuda")


# ---------------------------------------------------------------- python -m kernels


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "kernels", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


TINY_OVERRIDES = [
    "device=cpu",
    "cpu.gemm_shapes=[[64,64,64],[96,64,32]]",
    "cpu.conv.batch=1",
    "cpu.conv.height=8",
    "cpu.conv.width=8",
    "cpu.copy_bytes=65536",
    "cpu.timing.num_warmup=1",
    "cpu.timing.num_repeats=3",
    "cpu.timing.min_repeat_s=0.0",
    "quiet.max_attempts=1",
]


def test_cli_writes_profile_table_and_plot_only_under_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "hw"
    proc = _run_cli([f"out_dir={out}", *TINY_OVERRIDES], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name = device_name(CPU)
    threads = torch.get_num_threads()  # the subprocess keeps torch's default too
    path = profile_path(name, out, threads)
    assert path.name.endswith(f"-t{threads}.json")  # one CPU profile per thread count
    assert sorted(p.name for p in out.iterdir()) == sorted([path.name, path.with_suffix(".png").name, path.with_suffix(".txt").name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hw"]  # no outputs/ or .hydra/ anywhere else
    profile = load_profile(name, root=out, num_threads=threads)
    assert profile is not None
    assert profile["num_threads"] == threads and profile["schema_version"] == 2
    assert isinstance(profile["quiet"], bool) and profile["measured_at"].endswith("+00:00")
    assert len(profile["quiet_attempts"]) == 1 and profile["quiet_criteria"]["max_attempts"] == 1
    for key in ("host_load_avg_start", "host_load_avg_end", "process_cpu_share", "host_other_cpu_share",
                "host_steal_share", "contended", "contention_reason", "quiet_reason"):
        assert key in profile
    # Unquiet is said in one line, and only then.
    assert ("not quiet:" in proc.stdout) == (not profile["quiet"])
    assert set(profile["derived_peak_flops_per_s"]) == set(DTYPES)
    assert "derived" in proc.stdout
    assert profile["achieved_flops_per_s"]["fp32"] > 0 and profile["achieved_flops_per_s"]["bf16"] > 0
    assert all(c["agrees"] for c in profile["flop_counter_check"])
    assert profile["ncu_flop_check"] is None  # disabled by default
    assert profile["config"]["cpu"]["gemm_shapes"] == [[64, 64, 64], [96, 64, 32]]
    assert "achieved GFLOP/s" in proc.stdout and "wrote:" in proc.stdout


def test_cli_bad_value_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "hw"
    proc = _run_cli([f"out_dir={out}", "device=cpu", "cpu.dtypes=[fp32,fp64]"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cpu.dtypes" in proc.stderr and "fp64" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_run_with_ncu_enabled_without_gpu_records_skipped(tmp_path: Path, capsys) -> None:
    """In-process `run` (what the CLI calls): ncu asked for on a machine without it is recorded
    as skipped with the reason, and the rest of the profile is still written."""
    if torch.cuda.is_available():
        pytest.skip("covered by the gpu-marked ncu test")
    from kernels.__main__ import run

    cfg = _tiny_cfg(tmp_path / "hw")
    cfg.cpu.dtypes = ["fp32"]
    cfg.plot = False
    cfg.ncu.enabled = True
    profile = run(cfg)
    assert profile["ncu_flop_check"] == {"status": "skipped", "reason": "no CUDA device"}
    threads = torch.get_num_threads()
    assert load_profile(device_name(CPU), root=tmp_path / "hw", num_threads=threads) == json.loads(json.dumps(profile))
    assert not profile_path(device_name(CPU), tmp_path / "hw", threads).with_suffix(".png").exists()
    assert "ncu: skipped (no CUDA device)" in capsys.readouterr().out


@pytest.mark.gpu
def test_suite_on_cuda_all_dtypes(tmp_path: Path) -> None:
    """On a GPU: four dtypes, copy and host-to-device bandwidth, datasheet peaks when known."""
    cfg = KernelsConfig(device="cuda", out_dir=str(tmp_path))
    cfg.cuda = SweepConfig(
        dtypes=["fp32", "tf32", "bf16", "fp16"], gemm_shapes=[[1024, 1024, 1024]], copy_bytes=2**26,
        host_to_device_bytes=2**24, timing=TimingConfig(num_warmup=2, num_repeats=3, min_repeat_s=0.01),
    )
    device = torch.device("cuda")
    records = run_suite(cfg, device)
    profile = build_profile(cfg, device, records)
    assert all(profile["achieved_flops_per_s"][d] > 0 for d in DTYPES)
    assert profile["bandwidth_bytes_per_s"]["device_copy"] > 0
    assert profile["bandwidth_bytes_per_s"]["host_to_device"] > 0
    assert profile["versions"]["cuda"] == torch.version.cuda
    assert all(r["timing_method"] == "cuda_event" for r in records if "timing_method" in r)
    if profile["datasheet_device"]:
        # A measured figure above the datasheet peak means a timing or FLOP-count bug.
        for d in DTYPES:
            peak = profile["datasheet_flops_per_s"][d]
            if peak:
                assert profile["achieved_flops_per_s"][d] <= 1.05 * peak
