"""A CPU's theoretical peak FLOP/s, derived from cores, clock and ISA (never measured).

Thompson et al.'s hardware burden is devices x *theoretical* peak x time. GPUs have datasheet
peaks (:mod:`kernels.peaks`); CPUs have none, so the peak is derived:

    peak = cores in use x clock x FLOP/cycle/core

FLOP/cycle/core = FMA pipes x SIMD lanes x 2 (one FMA is 2 FLOPs, the project convention),
read from the vendor, family, model, model name and flags in ``/proc/cpuinfo`` against the
small cited table below. Where the table cannot say (an unknown vendor or model, an AVX-512
part whose number of FMA units is not known from its name, a hybrid CPU) or no clock can be
read, the result is None with the reason: never a guess.

Sources (cited per row in :data:`_SOURCES`):

- Intel 64 and IA-32 Architectures Optimization Reference Manual (Intel order no. 248966):
  execution ports and FMA units of Sandy Bridge, Haswell, Skylake (client and server),
  Ice Lake, Sapphire Rapids; the Intel AMX chapter for TDPBF16PS.
- Intel ARK, "# of AVX-512 FMA Units" per Xeon Scalable SKU (https://ark.intel.com).
- AMD Software Optimization Guide for AMD Family 17h Processors (pub. 55723, Zen),
  for AMD Family 17h Models 30h and Greater (pub. 56305, Zen 2), for AMD Family 19h
  (pub. 56665, Zen 3), for the AMD Zen4 Microarchitecture (pub. 57647) and for the AMD Zen5
  Microarchitecture (pub. 58455).
- Agner Fog, "The microarchitecture of Intel, AMD and VIA CPUs" (https://www.agner.org/optimize/).
- A. J. Yee, "Zen4's AVX512 Teardown" (numberworld.org, 2022) and "Zen5's AVX512 Teardown"
  (2024): Zen 4 executes 512-bit ops on its 256-bit pipes; Zen 5 desktop/server cores have
  512-bit datapaths, Strix Point mobile cores keep 256-bit ones.
- WikiChip (https://en.wikichip.org) for model numbers per microarchitecture.

Caveats the source string states: the clock is the one that could be read (base when
available); Intel parts lower their clock under heavy AVX-512 load, turbo raises it, so the
peak is nominal, not a bound a measurement cannot pass. In a VM the cores are the vCPUs the
guest sees.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ["CpuPeak", "CpuIdentity", "parse_cpuinfo", "read_clock", "flops_per_cycle", "cpu_peak"]

CPUINFO = Path("/proc/cpuinfo")
SYS_CPU = Path("/sys/devices/system/cpu")

_SOURCES = {
    "intel_opt": "Intel 64 and IA-32 Architectures Optimization Reference Manual",
    "intel_ark": "Intel ARK '# of AVX-512 FMA Units'",
    "amd_17h": "AMD Software Optimization Guide for Family 17h (pub. 55723)",
    "amd_17h_30h": "AMD Software Optimization Guide for Family 17h Models 30h+ (pub. 56305)",
    "amd_19h": "AMD Software Optimization Guide for Family 19h (pub. 56665)",
    "amd_zen4": "AMD Software Optimization Guide for the Zen4 Microarchitecture (pub. 57647); "
    "A. J. Yee, Zen4's AVX512 Teardown",
    "amd_zen5": "AMD Software Optimization Guide for the Zen5 Microarchitecture (pub. 58455); "
    "A. J. Yee, Zen5's AVX512 Teardown",
    "agner": "Agner Fog, The microarchitecture of Intel, AMD and VIA CPUs",
}


@dataclass(frozen=True)
class CpuIdentity:
    """What /proc/cpuinfo says about the first processor."""

    vendor: Optional[str]  # vendor_id: GenuineIntel, AuthenticAMD, ...
    family: Optional[int]
    model: Optional[int]
    stepping: Optional[int]
    model_name: Optional[str]
    flags: frozenset[str]
    cpu_mhz: Optional[float]


@dataclass(frozen=True)
class CpuPeak:
    """A derived CPU peak, or why there is none.

    Attributes:
        dtype: ``fp32``, ``bf16``, ...
        flops_per_s: cores x clock x FLOP/cycle/core; None when it cannot be derived.
        source: ``derived: ...``, the whole derivation in one line; None with the value.
        reason: Why the value is None (one line); None when there is a value.
        num_cores, clock_hz, clock_source, flops_per_cycle_per_core, microarchitecture: The
            factors (None where unknown).
    """

    dtype: str
    flops_per_s: Optional[float]
    source: Optional[str]
    reason: Optional[str]
    num_cores: Optional[int] = None
    clock_hz: Optional[float] = None
    clock_source: Optional[str] = None
    flops_per_cycle_per_core: Optional[int] = None
    microarchitecture: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for JSON."""
        return asdict(self)


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def parse_cpuinfo(text: str) -> CpuIdentity:
    """The first processor block of /proc/cpuinfo (x86 keys; other architectures give Nones)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())

    def as_int(key: str) -> Optional[int]:
        try:
            return int(fields[key], 0) if key in fields else None
        except ValueError:
            return None

    try:
        mhz = float(fields["cpu mhz"]) if "cpu mhz" in fields else None
    except ValueError:
        mhz = None
    name = " ".join(fields.get("model name", "").split()) or None
    return CpuIdentity(
        vendor=fields.get("vendor_id"),
        family=as_int("cpu family"),
        model=as_int("model"),
        stepping=as_int("stepping"),
        model_name=name,
        flags=frozenset(fields.get("flags", "").split()),
        cpu_mhz=mhz if mhz and mhz > 0 else None,
    )


def read_clock(
    cpu: CpuIdentity, *, max_mhz: Optional[float] = None, sys_cpu: Path = SYS_CPU
) -> tuple[Optional[float], Optional[str]]:
    """The clock to multiply by, preferring the base (nominal) clock; (Hz, where it came from).

    Order: ``max_mhz`` given by the caller; cpufreq ``base_frequency`` (intel_pstate, the base
    clock); the ``@ 2.60GHz`` of an Intel model name (the rated base clock); cpufreq
    ``cpuinfo_max_freq`` (the maximum, usually the boost clock: an upper bound; lscpu's
    "CPU max MHz" is this same file); /proc/cpuinfo ``cpu MHz`` (the current clock, or in a VM
    often the TSC frequency). (None, None) when none can be read.
    """
    if max_mhz is not None:
        return max_mhz * 1e6, f"given clock {max_mhz:g} MHz"
    cpufreq = sys_cpu / "cpu0" / "cpufreq"
    base = _read(cpufreq / "base_frequency")
    if base and base.strip().isdigit() and int(base) > 0:
        return int(base) * 1e3, "base clock (/sys/devices/system/cpu/cpu0/cpufreq/base_frequency)"
    if cpu.model_name:
        match = re.search(r"@\s*([0-9]+(?:\.[0-9]+)?)\s*GHz", cpu.model_name, flags=re.IGNORECASE)
        if match:
            return float(match.group(1)) * 1e9, "base clock from the model name"
    top = _read(cpufreq / "cpuinfo_max_freq")
    if top and top.strip().isdigit() and int(top) > 0:
        return int(top) * 1e3, "maximum (boost) clock (cpufreq cpuinfo_max_freq), an upper bound"
    if cpu.cpu_mhz:
        return cpu.cpu_mhz * 1e6, "'cpu MHz' in /proc/cpuinfo (the current clock, or in a VM often the TSC frequency)"
    return None, None


# ---------------------------------------------------------------- the FLOP/cycle table

# Intel family 6 models (Intel SDM vol. 4, table 2-1; Linux arch/x86/include/asm/intel-family.h).
_INTEL_SERVER_2FMA = {  # every SKU has two 512-bit FMA units (Intel ARK)
    0x6A: "Ice Lake-SP",
    0x8F: "Sapphire Rapids",
    0xCF: "Emerald Rapids",
    0xAD: "Granite Rapids",
    0xAE: "Granite Rapids-D",
}
_INTEL_CLIENT_AVX512 = {  # client cores: one 512-bit FMA (ports 0+1 fused); port 5 has none
    0x66: "Cannon Lake",
    0x7D: "Ice Lake",
    0x7E: "Ice Lake",
    0x8C: "Tiger Lake",
    0x8D: "Tiger Lake",
    0xA7: "Rocket Lake",
}
_INTEL_ATOM_AVX2 = {  # E-core-only parts with AVX2: FMA width not in this table
    0xBE: "Alder Lake-N (Gracemont)",
    0xAF: "Sierra Forest (Crestmont)",
    0xB6: "Grand Ridge (Crestmont)",
    0xDD: "Clearwater Forest (Darkmont)",
}


def _skylake_sp_fma_units(cpu: CpuIdentity) -> tuple[Optional[int], str]:
    """AVX-512 FMA units of a family 6 model 0x55 part (Skylake-SP, Cascade Lake, Cooper Lake).

    Per Intel ARK: Platinum and Gold 6xxx have 2; Gold 5xxx 1, except the 5122 and 5222 (2);
    Silver and Bronze 1; Cooper Lake (stepping 10-11, Gold 53xxH/63xxH, Platinum 83xxH) 2.
    Other names (Xeon W, Core X-series, Xeon D, a hidden SKU such as 'Intel Xeon CPU @ 2.20GHz'
    in cloud VMs) give None.
    """
    name = cpu.model_name or ""
    gen = "Cascade Lake" if (cpu.stepping or 0) in (5, 6, 7) else "Skylake-SP"
    if (cpu.stepping or 0) in (10, 11):
        return 2, "Cooper Lake"
    if re.search(r"\bPlatinum\b", name):
        return 2, f"{gen} Platinum"
    match = re.search(r"\bGold\s+([56])(\d{3})", name)
    if match:
        sku = match.group(1) + match.group(2)
        if match.group(1) == "6" or sku in ("5122", "5222"):
            return 2, f"{gen} Gold {sku}"
        return 1, f"{gen} Gold {sku}"
    match = re.search(r"\b(Silver|Bronze)\b", name)
    if match:
        return 1, f"{gen} {match.group(1)}"
    return None, gen


def flops_per_cycle(cpu: CpuIdentity) -> tuple[Optional[int], str]:
    """FP32 FLOP/cycle/core from the ISA and microarchitecture.

    Returns:
        (FLOP/cycle, the derivation with its source), or (None, the reason).
    """
    f = cpu.flags
    vendor, family, model = cpu.vendor, cpu.family, cpu.model
    if "hybrid_cpu" in f:
        return None, "hybrid CPU (P- and E-cores with different FMA widths); which cores run is unknown"
    if vendor == "GenuineIntel" and family == 6 and model is not None:
        if "avx512f" in f:
            if model in _INTEL_SERVER_2FMA:
                return 64, (f"AVX-512 on Intel {_INTEL_SERVER_2FMA[model]}: 2 x 512-bit FMA units "
                            f"[{_SOURCES['intel_opt']}; {_SOURCES['intel_ark']}]")
            if model in _INTEL_CLIENT_AVX512:
                return 32, (f"AVX-512 on Intel {_INTEL_CLIENT_AVX512[model]} (client): 1 x 512-bit FMA unit "
                            f"[{_SOURCES['intel_opt']}]")
            if model == 0x55:
                units, gen = _skylake_sp_fma_units(cpu)
                if units is None:
                    return None, (f"Intel {gen} with AVX-512: its number of 512-bit FMA units (1 or 2) "
                                  f"is not known from the model name {cpu.model_name!r} [{_SOURCES['intel_ark']}]")
                return 32 * units, (f"AVX-512 on Intel {gen}: {units} x 512-bit FMA unit{'s' if units > 1 else ''} "
                                    f"[{_SOURCES['intel_ark']}; {_SOURCES['intel_opt']}]")
            return None, f"Intel family 6 model {model:#x} with AVX-512 is not in the FMA-unit table"
        if model in _INTEL_ATOM_AVX2:
            return None, f"Intel {_INTEL_ATOM_AVX2[model]} E-cores: FMA width not in the table"
        if "avx2" in f and "fma" in f:
            return 32, f"AVX2 + FMA on Intel (Haswell and later big cores): 2 x 256-bit FMA units [{_SOURCES['intel_opt']}]"
        if "avx" in f:
            return 16, (f"AVX without FMA on Intel (Sandy/Ivy Bridge): 1 x 256-bit add + 1 x 256-bit multiply "
                        f"per cycle [{_SOURCES['intel_opt']}; {_SOURCES['agner']}]")
        return None, f"Intel family 6 model {model:#x} without AVX is not in the table"
    if vendor == "AuthenticAMD" and family is not None and model is not None:
        if family == 0x17:  # Zen, Zen+ (models 00h-2Fh), Zen 2 (30h and up)
            if model >= 0x30:
                return 32, f"AVX2 + FMA on AMD Zen 2: 2 x 256-bit FMA pipes [{_SOURCES['amd_17h_30h']}]"
            return 16, f"AVX2 + FMA on AMD Zen/Zen+: 2 x 128-bit FMA pipes [{_SOURCES['amd_17h']}]"
        if family == 0x19:  # Zen 3 (no AVX-512) and Zen 4 (AVX-512)
            if "avx512f" in f:
                return 32, (f"AVX-512 on AMD Zen 4: 2 x 256-bit FMA pipes, a 512-bit op uses both "
                            f"[{_SOURCES['amd_zen4']}]")
            # Zen 3, or a Zen 4 whose hypervisor hides AVX-512: both have 2 x 256-bit FMA pipes.
            return 32, (f"AVX2 + FMA on AMD family 19h (Zen 3, or Zen 4 without AVX-512 exposed): "
                        f"2 x 256-bit FMA pipes [{_SOURCES['amd_19h']}; {_SOURCES['amd_zen4']}]")
        if family == 0x1A:  # Zen 5: 512-bit datapaths on EPYC 9005 and Ryzen 9000 desktop only
            name = cpu.model_name or ""
            if re.search(r"\bEPYC\b", name) or re.search(r"\bRyzen \d+ 9\d{3}", name):
                return 64, (f"AVX-512 on AMD Zen 5 (server/desktop): 2 x 512-bit FMA pipes "
                            f"[{_SOURCES['amd_zen5']}]")
            return None, (f"AMD Zen 5 {name!r}: 512-bit (desktop, server) or 256-bit (mobile) FMA datapath "
                          "not known from the name")
        return None, f"AMD family {family:#x} is not in the table (Zen and later only)"
    what = cpu.vendor or "unknown vendor (not x86?)"
    return None, f"no FLOP/cycle table for {what}" + (f" family {family}" if family is not None else "")


def _bf16_flops_per_cycle(cpu: CpuIdentity) -> tuple[Optional[int], str]:
    """BF16 FLOP/cycle/core, only where a rate is documented (AMX); else None with the reason."""
    if "amx_bf16" in cpu.flags:
        # TDPBF16PS: a 16x16 FP32 tile += 16x32 BF16 x 32x16 BF16, 8192 multiply-adds, one per
        # 16 cycles per core = 512 MAC = 1024 FLOP/cycle (Intel Optimization Reference Manual, AMX chapter).
        return 1024, f"Intel AMX-BF16: TDPBF16PS 16x16x32 per 16 cycles [{_SOURCES['intel_opt']}, AMX chapter]"
    if "avx512_bf16" in cpu.flags:
        return None, ("avx512_bf16 (VDPBF16PS) is present but its throughput on this core is not in the "
                      "cited sources")
    return None, "no BF16 arithmetic in this CPU's ISA flags (avx512_bf16, amx_bf16)"


def cpu_peak(
    dtype: str,
    num_cores: Optional[int],
    *,
    cpuinfo_text: Optional[str] = None,
    max_mhz: Optional[float] = None,
    sys_cpu: Path = SYS_CPU,
) -> CpuPeak:
    """Theoretical peak FLOP/s of ``num_cores`` cores for ``dtype``.

    Args:
        dtype: ``fp32`` (the paper's burden) or ``bf16``; others give None with the reason.
        num_cores: Physical cores in use (:func:`common.host.cores_in_use`); None gives None.
        cpuinfo_text: /proc/cpuinfo contents (tests); read from the file when None.
        max_mhz: A clock in MHz to use instead of reading one (e.g. from config).
        sys_cpu: The sysfs cpu folder (tests point it at a fixture).

    Returns:
        A :class:`CpuPeak`: ``flops_per_s`` with a ``derived: ...`` source, or None with a reason.
    """
    def none(reason: str, **factors: Any) -> CpuPeak:
        return CpuPeak(dtype=dtype, flops_per_s=None, source=None, reason=reason, **factors)

    if cpuinfo_text is None:
        cpuinfo_text = _read(CPUINFO)
    if not cpuinfo_text:
        return none("/proc/cpuinfo is unreadable")
    cpu = parse_cpuinfo(cpuinfo_text)
    if dtype == "fp32":
        per_cycle, how = flops_per_cycle(cpu)
    elif dtype == "bf16":
        per_cycle, how = _bf16_flops_per_cycle(cpu)
    else:
        per_cycle, how = None, f"no {dtype} rate tabulated for CPUs (fp32 and bf16 only)"
    clock_hz, clock_source = read_clock(cpu, max_mhz=max_mhz, sys_cpu=sys_cpu)
    factors = dict(num_cores=num_cores, clock_hz=clock_hz, clock_source=clock_source,
                   flops_per_cycle_per_core=per_cycle)
    if per_cycle is None:
        return none(how, **factors)
    if num_cores is None or num_cores < 1:
        return none("the number of physical cores in use is unknown", **factors)
    if clock_hz is None:
        return none("no clock could be read (no cpufreq, no '@ GHz' in the model name, no 'cpu MHz')", **factors)
    vm = " (vCPUs as this VM presents them)" if "hypervisor" in cpu.flags else ""
    flops = num_cores * clock_hz * per_cycle
    source = (
        f"derived: {num_cores} core{'s' if num_cores != 1 else ''}{vm} x {clock_hz / 1e9:.2f} GHz x "
        f"{per_cycle} {dtype.upper()} FLOP/cycle ({how}); clock: {clock_source}"
    )
    return CpuPeak(dtype=dtype, flops_per_s=flops, source=source, reason=None,
                   microarchitecture=how.split(":")[0], **factors)
