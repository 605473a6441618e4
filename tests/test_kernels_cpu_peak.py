"""kernels.cpu_peak: the derived CPU peak from /proc/cpuinfo fixtures (no real hardware needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernels.cpu_peak import cpu_peak, flops_per_cycle, parse_cpuinfo, read_clock


def _cpuinfo(vendor: str, family: int, model: int, name: str, flags: str, mhz: str | None = "2596.138",
             stepping: int = 1) -> str:
    block = (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\nstepping\t: {stepping}\n"
        + (f"cpu MHz\t\t: {mhz}\n" if mhz else "")
        + f"flags\t\t: {flags}\n\n"
    )
    return block + block.replace("processor\t: 0", "processor\t: 1")


AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2"
AVX512 = AVX2 + " avx512f avx512dq avx512cd avx512bw avx512vl"
# This machine: a KVM guest on AMD EPYC (Genoa), family 25 model 17.
ZEN4 = _cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC", AVX512 + " hypervisor avx512_bf16 avx512_vnni")
ICELAKE_SP = _cpuinfo("GenuineIntel", 6, 106, "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", AVX512, mhz="800.000")
SKX_GOLD6 = _cpuinfo("GenuineIntel", 6, 85, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", AVX512, stepping=4)
SKX_SILVER = _cpuinfo("GenuineIntel", 6, 85, "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz", AVX512, stepping=7)
SKX_HIDDEN = _cpuinfo("GenuineIntel", 6, 85, "Intel(R) Xeon(R) CPU @ 2.20GHz", AVX512 + " hypervisor", stepping=7)
SPR = _cpuinfo("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8480+", AVX512 + " avx512_bf16 amx_bf16 amx_tile",
               mhz="2000.000")
HASWELL = _cpuinfo("GenuineIntel", 6, 63, "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", AVX2)
ZEN1 = _cpuinfo("AuthenticAMD", 23, 1, "AMD EPYC 7601 32-Core Processor", AVX2, mhz="2200.000")
ARM = (
    "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\n\n"
)


@pytest.fixture
def no_sysfs(tmp_path: Path) -> Path:
    """An empty sysfs cpu folder: no cpufreq, so the test host's clocks never leak in."""
    return tmp_path


def test_zen4_this_machine(no_sysfs: Path) -> None:
    peak = cpu_peak("fp32", 2, cpuinfo_text=ZEN4, sys_cpu=no_sysfs)
    assert peak.flops_per_cycle_per_core == 32  # AVX-512 on 2 x 256-bit pipes
    assert peak.flops_per_s == pytest.approx(2 * 2596.138e6 * 32)
    assert peak.source.startswith("derived: 2 cores (vCPUs as this VM presents them) x 2.60 GHz x 32 FP32 FLOP/cycle")
    assert "Zen 4" in peak.source and "cpu MHz" in peak.source and "\n" not in peak.source
    assert peak.reason is None
    bf16 = cpu_peak("bf16", 2, cpuinfo_text=ZEN4, sys_cpu=no_sysfs)
    assert bf16.flops_per_s is None and "VDPBF16PS" in bf16.reason  # no documented rate: no guess


def test_intel_avx512_two_fma_units_and_base_clock_from_name(no_sysfs: Path) -> None:
    peak = cpu_peak("fp32", 4, cpuinfo_text=ICELAKE_SP, sys_cpu=no_sysfs)
    assert peak.flops_per_cycle_per_core == 64
    assert peak.flops_per_s == pytest.approx(4 * 2.3e9 * 64)  # the rated 2.30 GHz, not 'cpu MHz' 800
    assert "Ice Lake-SP" in peak.source and "model name" in peak.clock_source


def test_skylake_sp_fma_units_by_sku(no_sysfs: Path) -> None:
    assert cpu_peak("fp32", 1, cpuinfo_text=SKX_GOLD6, sys_cpu=no_sysfs).flops_per_cycle_per_core == 64
    silver = cpu_peak("fp32", 1, cpuinfo_text=SKX_SILVER, sys_cpu=no_sysfs)
    assert silver.flops_per_cycle_per_core == 32 and "1 x 512-bit FMA unit" in silver.source
    hidden = cpu_peak("fp32", 2, cpuinfo_text=SKX_HIDDEN, sys_cpu=no_sysfs)
    assert hidden.flops_per_s is None and "1 or 2" in hidden.reason


def test_haswell_avx2(no_sysfs: Path) -> None:
    peak = cpu_peak("fp32", 2, cpuinfo_text=HASWELL, sys_cpu=no_sysfs)
    assert peak.flops_per_cycle_per_core == 32
    assert peak.flops_per_s == pytest.approx(2 * 2.5e9 * 32)
    assert "AVX2 + FMA" in peak.source
    assert cpu_peak("bf16", 2, cpuinfo_text=HASWELL, sys_cpu=no_sysfs).flops_per_s is None


def test_zen1_is_16(no_sysfs: Path) -> None:
    assert cpu_peak("fp32", 1, cpuinfo_text=ZEN1, sys_cpu=no_sysfs).flops_per_cycle_per_core == 16


def test_amx_bf16(no_sysfs: Path) -> None:
    peak = cpu_peak("bf16", 2, cpuinfo_text=SPR, sys_cpu=no_sysfs)
    assert peak.flops_per_s == pytest.approx(2 * 2.0e9 * 1024) and "AMX" in peak.source


def test_arm_or_unknown_gives_reason(no_sysfs: Path) -> None:
    peak = cpu_peak("fp32", 4, cpuinfo_text=ARM, sys_cpu=no_sysfs)
    assert peak.flops_per_s is None and peak.source is None and "no FLOP/cycle table" in peak.reason
    assert cpu_peak("fp32", 4, cpuinfo_text="", sys_cpu=no_sysfs).reason == "/proc/cpuinfo is unreadable"


def test_missing_clock_gives_reason(no_sysfs: Path) -> None:
    text = _cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC", AVX512, mhz=None)
    peak = cpu_peak("fp32", 2, cpuinfo_text=text, sys_cpu=no_sysfs)
    assert peak.flops_per_s is None and "no clock" in peak.reason
    assert peak.flops_per_cycle_per_core == 32  # the factor that was known is kept
    given = cpu_peak("fp32", 2, cpuinfo_text=text, max_mhz=3000, sys_cpu=no_sysfs)
    assert given.flops_per_s == pytest.approx(2 * 3e9 * 32) and "given clock 3000 MHz" in given.source


def test_unknown_cores_and_dtype(no_sysfs: Path) -> None:
    assert "physical cores" in cpu_peak("fp32", None, cpuinfo_text=ZEN4, sys_cpu=no_sysfs).reason
    assert "tf32" in cpu_peak("tf32", 2, cpuinfo_text=ZEN4, sys_cpu=no_sysfs).reason


def test_clock_preference_from_sysfs(tmp_path: Path) -> None:
    cpu = parse_cpuinfo(HASWELL)
    cpufreq = tmp_path / "cpu0" / "cpufreq"
    cpufreq.mkdir(parents=True)
    (cpufreq / "cpuinfo_max_freq").write_text("3300000\n")
    hz, source = read_clock(cpu, sys_cpu=tmp_path)
    assert hz == 2.5e9 and "model name" in source  # the rated base clock beats the boost maximum
    (cpufreq / "base_frequency").write_text("2400000\n")
    assert read_clock(cpu, sys_cpu=tmp_path) == (2.4e9, "base clock (/sys/devices/system/cpu/cpu0/cpufreq/base_frequency)")
    hz, source = read_clock(parse_cpuinfo(ZEN4), sys_cpu=tmp_path / "none")
    assert hz == pytest.approx(2596.138e6) and "TSC" in source


def test_hybrid_is_none() -> None:
    text = _cpuinfo("GenuineIntel", 6, 151, "12th Gen Intel(R) Core(TM) i7-12700K", AVX2 + " hybrid_cpu")
    per_cycle, reason = flops_per_cycle(parse_cpuinfo(text))
    assert per_cycle is None and "hybrid" in reason


def test_parse_cpuinfo_reads_first_block() -> None:
    cpu = parse_cpuinfo(ZEN4)
    assert (cpu.vendor, cpu.family, cpu.model, cpu.model_name) == ("AuthenticAMD", 25, 17, "AMD EPYC")
    assert "avx512f" in cpu.flags and cpu.cpu_mhz == pytest.approx(2596.138)
