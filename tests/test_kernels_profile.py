"""Which measured ceiling a run may trust (select_measured_peak), and the repeat-until-quiet loop
(kernels.quiet) driven by fake measurements and fake host snapshots: no real contention needed."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
import torch

from common.host import HostSnapshot
from kernels.bench import build_profile
from kernels.config import KernelsConfig
from kernels.peaks import DTYPES
from kernels.profile import load_profile, profile_path, select_measured_peak, write_profile
from kernels.quiet import gemm_spreads, judge, measure_until_quiet

NAME = "AMD EPYC"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)
DAY_S = 24 * 3600.0


def _profile(**overrides) -> dict:
    profile = {
        "device_name": NAME,
        "device_type": "cpu",
        "num_threads": 2,
        "measured_at": (NOW - dt.timedelta(hours=1)).isoformat(timespec="seconds"),
        "quiet": True,
        "quiet_reason": None,
        "achieved_flops_per_s": {"fp32": 1.6e11, "tf32": None, "bf16": 3.0e11, "fp16": None},
        "datasheet_flops_per_s": {d: None for d in DTYPES},
        "bandwidth_bytes_per_s": {"device_copy": 1e10, "host_to_device": None},
    }
    profile.update(overrides)
    return profile


def _select(tmp_path: Path, dtype: str = "fp32", num_threads: int = 2, max_age_s: float | None = DAY_S):
    return select_measured_peak(NAME, dtype, num_threads, max_age_s, tmp_path, now=NOW)


# ---------------------------------------------------------------- select_measured_peak


def test_good_profile_is_used(tmp_path: Path) -> None:
    path = write_profile(_profile(), tmp_path)
    assert path.name == "amd-epyc-t2.json"
    peak = _select(tmp_path)
    assert peak.value == 1.6e11 and peak.ignored_reason is None
    assert "python -m kernels" in peak.source and "2 threads" in peak.source and str(path) in peak.source
    assert _select(tmp_path, "bf16").value == 3.0e11


def test_missing_profile_says_so(tmp_path: Path) -> None:
    peak = _select(tmp_path)
    assert peak.value is None and peak.source is None
    assert "no hardware profile" in peak.ignored_reason and "python -m kernels" in peak.ignored_reason


def test_other_thread_count_is_ignored_and_profiles_coexist(tmp_path: Path) -> None:
    write_profile(_profile(num_threads=4, achieved_flops_per_s={"fp32": 3e11}), tmp_path)
    peak = _select(tmp_path, num_threads=2)
    assert peak.value is None and "found only amd-epyc-t4.json" in peak.ignored_reason
    write_profile(_profile(), tmp_path)  # the 2-thread profile beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["amd-epyc-t2.json", "amd-epyc-t4.json"]
    assert _select(tmp_path, num_threads=2).value == 1.6e11
    assert _select(tmp_path, num_threads=4).value == 3e11
    # A profile whose file name and contents disagree is still caught by its contents.
    (tmp_path / "amd-epyc-t8.json").write_text(json.dumps(_profile(num_threads=4)))
    peak = _select(tmp_path, num_threads=8)
    assert peak.value is None and "measured with 4 threads, this run uses 8" in peak.ignored_reason


def test_old_profile_is_ignored(tmp_path: Path) -> None:
    write_profile(_profile(measured_at=(NOW - dt.timedelta(days=3)).isoformat()), tmp_path)
    peak = _select(tmp_path)
    assert peak.value is None and "72.0 h ago, older than the 24.0 h allowed" in peak.ignored_reason
    assert _select(tmp_path, max_age_s=None).value == 1.6e11  # no age limit asked for


def test_contended_profile_is_ignored(tmp_path: Path) -> None:
    reason = "other processes used 47% of the host's 2 CPUs (threshold 10%)"
    write_profile(_profile(quiet=False, quiet_reason=reason, contended=True), tmp_path)
    peak = _select(tmp_path)
    assert peak.value is None and "not measured on a quiet machine" in peak.ignored_reason
    assert reason in peak.ignored_reason and "\n" not in peak.ignored_reason


def test_missing_dtype_is_ignored(tmp_path: Path) -> None:
    write_profile(_profile(), tmp_path)
    peak = _select(tmp_path, "fp16")
    assert peak.value is None and "no fp16 figure" in peak.ignored_reason


def test_legacy_profile_without_threads_or_time_is_ignored(tmp_path: Path) -> None:
    legacy = {k: v for k, v in _profile().items() if k not in ("device_type", "num_threads", "measured_at", "quiet")}
    write_profile(legacy, tmp_path)
    assert (tmp_path / "amd-epyc.json").is_file()
    peak = _select(tmp_path)
    assert peak.value is None and "thread count" in peak.ignored_reason
    write_profile({**legacy, "device_type": "cpu", "num_threads": 2}, tmp_path)
    assert "measured_at" in _select(tmp_path).ignored_reason


def test_gpu_profile_ignores_cpu_thread_count(tmp_path: Path) -> None:
    gpu = "NVIDIA H100 80GB HBM3"
    write_profile(_profile(device_name=gpu, device_type="cuda", num_threads=None), tmp_path)
    assert profile_path(gpu, tmp_path).is_file()
    peak = select_measured_peak(gpu, "fp32", 2, DAY_S, tmp_path, now=NOW)
    assert peak.value == 1.6e11 and "threads" not in peak.source


def test_corrupt_profile_is_ignored_without_warning(tmp_path: Path, recwarn) -> None:
    (tmp_path / "amd-epyc-t2.json").write_text("{not json")
    peak = _select(tmp_path)
    assert peak.value is None and "unreadable" in peak.ignored_reason
    assert not recwarn.list


# ---------------------------------------------------------------- the quiet loop

HZ = os.sysconf("SC_CLK_TCK")


class FakeHost:
    """Snapshots for successive attempts: each attempt lasts 10 s on 2 CPUs, this process uses
    ``own_s`` CPU seconds and other processes ``other_s``."""

    def __init__(self, windows: list[tuple[float, float]]) -> None:
        self.windows = list(windows)
        self.t = 0.0
        self.proc = 0.0
        self.busy = 0.0
        self.calls = 0

    def __call__(self) -> HostSnapshot:
        if self.calls % 2 == 1:  # the end of an attempt
            own_s, other_s = self.windows.pop(0)
            self.t += 10.0
            self.proc += own_s
            self.busy += own_s + other_s
        self.calls += 1
        return HostSnapshot(wall_s=self.t, process_cpu_s=self.proc, machine_busy_s=self.busy,
                            machine_total_s=self.t * 2, machine_steal_s=0.0, load_avg_1m=1.5, children_cpu_s=0.0)


def _records(fp32: float, spread: float, bf16_spread: float | None = 0.01) -> list[dict]:
    """Minimal kernels.bench records (shape and time only as build_profile needs them)."""
    extra = {"shape": {"m": 64, "n": 64, "k": 64}, "time_median_s": 1e-3}
    recs = [
        {"op": "gemm", "dtype": "fp32", "flops_per_s": fp32 / 2, "spread_rel": 0.5},  # a slower shape
        {"op": "gemm", "dtype": "fp32", "flops_per_s": fp32, "spread_rel": spread},
        {"op": "conv2d", "dtype": "fp32", "flops_per_s": 1e9, "spread_rel": 0.9},  # not a GEMM
    ]
    if bf16_spread is not None:
        recs.append({"op": "gemm", "dtype": "bf16", "flops_per_s": 2 * fp32, "spread_rel": bf16_spread})
    return [{**extra, **r} for r in recs]


def _loop(measurements, windows, max_attempts=3, **kwargs):
    calls = iter(measurements)
    sleeps: list[float] = []
    logs: list[str] = []
    outcome = measure_until_quiet(
        lambda: next(calls), num_threads=2, max_attempts=max_attempts, max_spread_rel=0.05, wait_s=7.0,
        snapshot=FakeHost(windows), sleep=sleeps.append, now=lambda: "2026-11-25T12:00:00+00:00",
        log=logs.append, **kwargs,
    )
    return outcome, sleeps, logs


def test_gemm_spreads_take_each_dtypes_best_shape() -> None:
    assert gemm_spreads(_records(1e11, 0.02)) == {"fp32": 0.02, "bf16": 0.01}
    assert gemm_spreads([{"op": "gemm", "dtype": "fp32", "skipped": "max_call_s"}]) == {}


def test_quiet_first_attempt_stops() -> None:
    outcome, sleeps, logs = _loop([_records(1.6e11, 0.02)], [(19.0, 0.2)])
    assert outcome.quiet and outcome.chosen.reason is None and len(outcome.attempts) == 1
    assert sleeps == [] and logs == []
    c = outcome.chosen.conditions
    assert c["host_other_cpu_share"] == pytest.approx(0.01) and c["contended"] is False
    assert c["process_cpu_share"] == pytest.approx(0.95) and c["host_load_avg_start"] == 1.5


def test_busy_then_quiet_repeats_until_quiet() -> None:
    # Attempt 1: another job takes 8 of the 20 CPU-seconds (small spread all the same, as in the
    # 348 -> 96 GFLOP/s case); attempt 2: noisy; attempt 3: quiet.
    outcome, sleeps, logs = _loop(
        [_records(0.96e11, 0.045), _records(1.5e11, 0.20), _records(1.6e11, 0.02)],
        [(10.0, 8.0), (19.0, 0.1), (19.0, 0.1)],
    )
    assert outcome.quiet and len(outcome.attempts) == 3 and outcome.chosen is outcome.attempts[2]
    assert sleeps == [7.0, 7.0]
    assert "other processes used 40%" in logs[0] and "fp32 20.0%" in logs[1]
    summary = outcome.attempts[0].summary()
    assert summary["quiet"] is False and summary["gemm_flops_per_s"]["fp32"] == 0.96e11
    assert summary["host_other_cpu_share"] == pytest.approx(0.4) and "records" not in summary


def test_never_quiet_reports_least_contended_attempt() -> None:
    outcome, sleeps, _ = _loop(
        [_records(1.0e11, 0.01), _records(1.2e11, 0.01)], [(10.0, 8.0), (15.0, 4.0)], max_attempts=2,
    )
    assert not outcome.quiet and len(outcome.attempts) == 2 and sleeps == [7.0]
    assert outcome.chosen is outcome.attempts[1]  # 20 % other use beats 40 %
    assert "other processes used 20%" in outcome.chosen.reason


def test_noisy_bf16_alone_is_not_quiet() -> None:
    outcome, _, _ = _loop([_records(1.6e11, 0.02, bf16_spread=0.3)], [(19.0, 0.1)], max_attempts=1)
    assert not outcome.quiet and "bf16 30.0%" in outcome.chosen.reason


def test_gpu_ignores_host_cpu_use() -> None:
    outcome, _, _ = _loop([_records(5e13, 0.01)], [(2.0, 15.0)], max_attempts=1, check_host=False)
    assert outcome.quiet


def test_unknown_host_is_not_quiet() -> None:
    quiet, reason = judge({"fp32": 0.01}, {"contended": None, "contention_reason": "host CPU use unknown: x"},
                          max_spread_rel=0.05, check_host=True)
    assert not quiet and "unknown" in reason
    quiet, reason = judge({}, {"contended": False}, max_spread_rel=0.05, check_host=True)
    assert not quiet and "no GEMM" in reason


# ---------------------------------------------------------------- the profile's new keys


def test_build_profile_records_conditions_and_derived_peak(tmp_path: Path) -> None:
    cfg = KernelsConfig(device="cpu", out_dir=str(tmp_path))
    outcome, _, _ = _loop([_records(1.6e11, 0.02)], [(19.0, 0.2)])
    from kernels.__main__ import _quiet_fields

    profile = build_profile(cfg, torch.device("cpu"), outcome.chosen.records, conditions=_quiet_fields(cfg, outcome))
    assert profile["quiet"] is True and profile["measured_at"] == "2026-11-25T12:00:00+00:00"
    assert profile["host_other_cpu_share"] == pytest.approx(0.01) and profile["contended"] is False
    assert profile["quiet_criteria"]["max_spread_rel"] == 0.05 and len(profile["quiet_attempts"]) == 1
    assert profile["num_threads"] == torch.get_num_threads()
    assert set(profile["derived_peak_flops_per_s"]) == set(DTYPES)
    fp32_source = profile["derived_peak_source"]["fp32"]
    assert fp32_source.startswith("derived:") or fp32_source.startswith("null:")
    assert profile["derived_peak_source"]["tf32"].startswith("null:")
    path = write_profile(profile, tmp_path)
    assert path == profile_path(profile["device_name"], tmp_path, profile["num_threads"])
    assert load_profile(profile["device_name"], tmp_path, profile["num_threads"])["quiet"] is True
