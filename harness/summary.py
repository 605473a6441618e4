"""The short terminal summary printed at the end of a run."""
from __future__ import annotations

import os
import re
from typing import Any, Optional


def _si(value: Optional[float], unit: str) -> str:
    if value is None:
        return "n/a"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _num(value: Optional[float], fmt: str = ".4g", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _relative(path: str) -> str:
    """The path relative to the working folder when it lies inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _conditions(r: dict[str, Any]) -> str:
    share = r.get("host_other_cpu_share")
    other = "n/a" if share is None else f"{share:.0%}"
    if r.get("contended") is None:
        verdict = "contention unknown"
    elif r["contended"]:
        verdict = f"CONTENDED ({r.get('contention_reason')})"
    else:
        verdict = "quiet"
    return f"{verdict}; {r.get('num_threads')} threads, other processes' CPU share {other}"


def _short(source: Optional[str]) -> str:
    """A source string without its parenthesised details and citations (result.json has them)."""
    if not source:
        return "n/a"
    text = source
    while True:
        shorter = re.sub(r"\s*[(\[][^()\[\]]*[)\]]", "", text)
        if shorter == text:
            break
        text = shorter
    return text.split(";")[0].strip()


def _assumptions(r: dict[str, Any]) -> Optional[str]:
    """What each estimated energy component assumed, in a few words (all of it is in result.json)."""
    assumed = r.get("energy_assumptions")
    if not assumed:
        return None
    parts = []
    for part, spec in assumed.items():
        if not isinstance(spec, dict):
            continue
        bits = []
        if isinstance(spec.get("tdp_w"), (int, float)):
            bits.append(f"TDP {spec['tdp_w']:g} W, {spec.get('tracking_mode', '?')} load")
        if isinstance(spec.get("watts"), (int, float)):
            bits.append(f"{spec['watts']:g} W")
        if isinstance(spec.get("mean_power_w"), (int, float)) and "watts" not in spec:
            bits.append(f"mean {spec['mean_power_w']:.3g} W")
        parts.append(f"{part} {', '.join(bits) or 'estimated'}")
    return ("; ".join(parts) + " (codecarbon model: result.json energy_assumptions)") if parts else None


def _other_metrics(r: dict[str, Any]) -> Optional[str]:
    """The evaluation's metrics besides the primary one (precision, recall, a dev score)."""
    others = {k: v for k, v in (r.get("metrics") or {}).items() if k != r.get("metric_name")}
    return "  ".join(f"{k} {_num(v)}" for k, v in others.items()) or None


def _startup(r: dict[str, Any]) -> Optional[str]:
    """Where the start-up went, phase by phase (result.json ``startup_phases_s``)."""
    phases = r.get("startup_phases_s")
    if not isinstance(phases, dict) or not phases:
        return None
    return ", ".join(f"{name.replace('_', ' ')} {_num(s, '.1f', ' s')}" for name, s in phases.items())


def _achieved(r: dict[str, Any]) -> str:
    """Achieved FLOP/s and both MFUs, with what each peak is: a CPU peak derived from the clock the
    VM reports is nominal (boost clocks pass it, so MFU near or over 100% is possible), and a
    missing measured MFU says how to get one."""
    text = f"{_si(r.get('achieved_flops_per_s'), 'FLOP/s')}; MFU theoretical {_num(r.get('mfu_theoretical'), '.1%')}"
    if r.get("device_type") == "cpu" and str(r.get("peak_source") or "").startswith("derived"):
        text += " (of a nominal-clock peak that boost clocks pass)"
    if r.get("mfu_measured") is not None:
        return text + f", measured {_num(r.get('mfu_measured'), '.1%')}"
    if r.get("measured_peak_note"):  # no profile, a stale one, or one not measured quiet
        return text + ", measured n/a (no usable hardware profile: run python -m kernels)"
    return text + ", measured n/a"


def format_summary(r: dict[str, Any], run_dir: str) -> str:
    """A dozen aligned lines: what ran, quality, compute, time, hardware, energy, conditions."""
    methods = f"gpu={r.get('energy_gpu_method')}, cpu={r.get('energy_cpu_method')}, ram={r.get('energy_ram_method')}"
    rows = [
        ("run", f"{r['model']} scale={r['scale']} on {r['dataset']} ({r['benchmark']}), "
                f"{'' if (r.get('num_devices') or 1) == 1 else str(r['num_devices']) + ' x '}{r['device_name']}, {r['precision']}"),
        ("status", r["status"] + (f" ({r['failure_reason']})" if r.get("failure_reason") else "")),
        (r.get("metric_name") or "metric", f"{_num(r.get('metric_value'))}  (error {_num(r.get('error'))})"),
        ("other metrics", _other_metrics(r)),
        ("predictions", ", ".join(r["prediction_files"]) if r.get("prediction_files") else None),
        ("trained", f"{r.get('train_samples')} samples, {r.get('train_steps')} steps, {_num(r.get('epochs'), '.3g')} epochs"),
        ("forward", f"{_si(r.get('fwd_flops_per_sample'), 'FLOP')}/sample (fvcore MACs x 2; fvcore/FlopCounterMode "
                    f"{_num(r.get('fwd_flops_counter_agreement'), '.3f')})"),
        ("train compute", f"{_si(r.get('train_flops'), 'FLOP')} (3 x fwd of each batch as run: {r.get('flops_distinct_shapes')} "
                          f"shapes, padding {_num(r.get('padding_fraction'), '.1%')}); step counted/analytic = "
                          f"{_num(r.get('train_step_flops_ratio'), '.3f')}"),
        ("time", f"train {_num(r.get('train_time_s'), '.1f', ' s')}, eval {_num(r.get('eval_time_s'), '.1f', ' s')}, "
                 f"data {_num(r.get('data_time_s'), '.1f', ' s')}, warm-up {_num(r.get('warmup_time_s'), '.1f', ' s')}, "
                 f"wall {_num(r.get('wall_time_s'), '.1f', ' s')}; start-up {_num(r.get('startup_time_s'), '.1f', ' s')}, "
                 f"eval {_num(r.get('eval_samples_per_s'), '.0f', ' samples/s')}"),
        ("start-up", _startup(r)),
        ("achieved", _achieved(r)),
        ("hardware burden", f"{_si(r.get('hardware_burden_flops'), 'FLOP')} (peak {_si(r.get('peak_flops_per_s'), 'FLOP/s')}: "
                            f"{_short(r.get('peak_source'))})"),
        ("energy", f"{_num(r.get('energy_total_j'), '.4g', ' J')} training, {_num(r.get('warmup_energy_j'), '.3g', ' J')} warm-up "
                   f"({methods})"),
        ("assumed", _assumptions(r)),
        ("conditions", _conditions(r)),
        ("CO2", f"{_num(r.get('co2_kg'), '.3g', ' kg')} at {_num(r.get('carbon_intensity_g_per_kwh'), '.0f', ' g/kWh')} ({r.get('country_iso_code')})"),
        ("outputs", _relative(run_dir)),
    ]
    rows = [(k, v) for k, v in rows if v is not None]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:>{width}}  {v}" for k, v in rows)
