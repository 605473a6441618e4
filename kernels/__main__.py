"""``python -m kernels``: measure this device and write its hardware profile.

Writes ``<out_dir>/<name>.json`` (the profile), ``<name>.txt`` (the table) and ``<name>.png``
(the roofline), and prints the table; ``<name>`` is the device slug, with ``-t<threads>`` on
CPUs. The sweep is repeated until it is quiet (``quiet.*`` in the config, :mod:`kernels.quiet`);
when no attempt is, the profile says ``quiet: false`` and one line says why.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from kernels.config import (
    ConfigError,
    KernelsConfig,
    available_memory_bytes,
    check_device_string,
    check_memory,
    check_out_dir,
    conv_shape,
    register_configs,
    validate,
)
from kernels.ops import GemmShape
from common.atomic import write_atomic
from common.hydra_cli import conf_dir, exit_on_bad_overrides

register_configs()


def _flop_checks(cfg: KernelsConfig, device: torch.device, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """fvcore and FlopCounterMode counts of each op measured: the best GEMM shape per dtype,
    the conv layer in the first dtype, and a copy."""
    from kernels.flopcheck import check_conv2d, check_copy, check_gemm

    sweep = cfg.cuda if device.type == "cuda" else cfg.cpu
    checks = []
    for dtype in sweep.dtypes:
        gemms = [r for r in records if r["op"] == "gemm" and r["dtype"] == dtype and r.get("flops_per_s")]
        if gemms:
            best = max(gemms, key=lambda r: r["flops_per_s"])
            checks.append({"dtype": dtype, **check_gemm(GemmShape(**best["shape"]), dtype, device).as_dict()})
    if sweep.dtypes:
        checks.append({"dtype": sweep.dtypes[0], **check_conv2d(conv_shape(sweep.conv), sweep.dtypes[0], device).as_dict()})
    checks.append({"dtype": "fp32", **check_copy(1024, device).as_dict()})
    return checks


def _quiet_fields(cfg: KernelsConfig, outcome: Any) -> dict[str, Any]:
    """The profile's measured_at, quiet and host-condition keys from the quiet loop's outcome."""
    chosen = outcome.chosen
    return {
        **chosen.conditions,
        "measured_at": chosen.measured_at,
        "quiet": chosen.quiet,
        "quiet_reason": chosen.reason,
        "quiet_criteria": {
            "max_spread_rel": cfg.quiet.max_spread_rel,
            "max_other_cpu_share": cfg.quiet.max_other_cpu_share,
            "max_steal_share": cfg.quiet.max_steal_share,
            "max_attempts": cfg.quiet.max_attempts,
        },
        "quiet_attempts": [a.summary() for a in outcome.attempts],
    }


def run(cfg: KernelsConfig | DictConfig) -> dict[str, Any]:
    """Measure, write the profile, table and plot; return the profile.

    Raises:
        ConfigError: A bad value (before anything is measured or written).
    """
    from kernels.bench import build_profile, resolve_device, run_suite
    from kernels.ncu import run_ncu_check
    from kernels.profile import write_profile
    from kernels.quiet import measure_until_quiet
    from kernels.report import format_table, plot_roofline

    start = time.perf_counter()
    check_device_string(cfg.device)
    check_out_dir(cfg.out_dir)  # before measuring: a read-only folder used to fail after all the work
    try:
        device = resolve_device(cfg.device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    cfg = validate(cfg, device.type)
    check_memory(cfg, device.type, *available_memory_bytes(device))  # a huge shape fails here, not in the allocator
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    def log(msg: str) -> None:
        print(msg, flush=True)

    q = cfg.quiet
    outcome = measure_until_quiet(
        lambda: run_suite(cfg, device, log=log),
        num_threads=torch.get_num_threads(),
        max_attempts=q.max_attempts,
        max_spread_rel=q.max_spread_rel,
        max_other_cpu_share=q.max_other_cpu_share,
        max_steal_share=q.max_steal_share,
        wait_s=q.wait_s,
        check_host=device.type == "cpu",  # a GPU's GEMM does not share the host's CPUs
        log=log,
    )
    records = outcome.chosen.records
    checks = _flop_checks(cfg, device, records) if cfg.flop_check else None
    ncu = None
    if cfg.ncu.enabled:
        ncu = run_ncu_check(cfg.ncu.binary, cfg.ncu.gemm_shape, cfg.ncu.dtypes, cfg.ncu.train_step, cfg.ncu.timeout_s)
        log(f"ncu: {ncu['status']}" + (f" ({ncu.get('reason')})" if ncu.get("reason") else ""))
    profile = build_profile(cfg, device, records, flop_checks=checks, ncu=ncu,
                            conditions=_quiet_fields(cfg, outcome))
    profile["elapsed_s"] = time.perf_counter() - start  # before plotting: the measurement's own time
    path = write_profile(profile, cfg.out_dir)
    table = format_table(profile)
    table_path = path.with_suffix(".txt")
    write_atomic(table_path, table + "\n")
    outputs = [path, table_path]
    if cfg.plot:
        outputs.append(plot_roofline(profile, path.with_suffix(".png")))
    print("\n" + table)
    print("\nwrote: " + ", ".join(str(p) for p in outputs))
    if not outcome.quiet:
        print(
            f"not quiet: could not get a quiet measurement in {len(outcome.attempts)} attempt(s) "
            f"({outcome.chosen.reason}); the profile says quiet: false, so runs will not use its measured ceiling",
            flush=True,
        )
    return profile


@hydra.main(version_base=None, config_path=str(conf_dir("kernels")), config_name="kernels")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; user errors are one line on stderr, exit status 2, nothing written."""
    try:
        run(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    exit_on_bad_overrides("kernels")
    main()
