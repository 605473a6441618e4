"""Energy and CO2 over measurement windows: GPU from NVML (:mod:`harness.measure.nvml`), CPU/RAM and
carbon intensity from codecarbon, and a record of every assumption behind an estimated figure.

Windows (``begin_window(kind)``/``end_window()``, one open at a time, opened and closed by
:class:`harness.measure.meter.Meters` at a device synchronisation) are of two kinds here:
``train`` (the figures ``energy_*_j``, ``co2_kg`` and :meth:`EnergyMeter.so_far` cover these
only) and ``warmup`` (``warmup_energy_j``). :meth:`EnergyMeter.measure_idle` meters an idle
window before training (``idle_power_w``, ``energy_above_idle_j``).

CPU and RAM (:class:`EnergyMeter`) come from codecarbon's ``OfflineEmissionsTracker``
(https://docs.codecarbon.io/latest/explanation/methodology/), one ``start_task``/``stop_task``
per window, no network. What codecarbon 3.3.2 does (read from its source):

- CPU is ``rapl`` when codecarbon read an energy counter (Linux powercap RAPL, Windows EMI,
  Intel Power Gadget): a package counter, machine-wide whatever the tracking mode. Otherwise
  ``codecarbon_estimate`` from a TDP (its ``cpu_power.csv`` row x sockets, else 4 W per thread)
  and a load, sampled every 1 s by a thread (``external/hardware.py``
  ``CPU._get_power_from_cpu_load``):

  * ``tracking_mode="machine"``: ``TDP x (0.1 + 0.9 x load^3)``, load = busy share of all
    CPUs (every process on the host);
  * ``tracking_mode="process"``: ``TDP x CPU seconds of this process and its children /
    (wall seconds x logical CPUs)``, no idle floor. The sampler thread needs Python's GIL
    between its clock read and its CPU-time read: a process that holds the GIL (pure-Python
    loops) delays it and inflates a sample (up to 2x seen on a 2-core VM); torch ops release
    the GIL and agreed within 0.5%. ``energy_assumptions.cpu.expected_j_from_process_cpu_s``
    is the same model applied to this process's own CPU time, as a check.
- RAM is ``codecarbon_estimate``: 5 W per DIMM on x86 (1.5 W on ARM), at least 2 DIMMs, the
  DIMM count guessed from a memory size, because DIMMs are never read (``external/ram.py``):
  the machine's total memory (``machine``) or this process's resident memory (``process``).
- CO2 is ``energy_total_j`` in kWh times codecarbon's offline grid intensity for the country
  (``data/private_infra/global_energy_mix.json``), so CO2 and energy always agree.

``energy_assumptions`` is built from the tracker's own hardware objects (the CPU's TDP, mode and
thread count, the RAM object's size and DIMM estimate, codecarbon's last reported RAM power),
so it says what codecarbon used, not what we expect it to use.
"""
from __future__ import annotations

import copy
import functools
import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch

from harness.measure.nvml import GpuEnergyMeter, _visible_device_entry

log = logging.getLogger(__name__)

#: 1 kWh = 3.6 MJ, by definition of the watt-hour.
JOULES_PER_KWH = 3.6e6

#: The window kinds :class:`EnergyMeter` meters (``eval`` is timed elsewhere, never metered).
ENERGY_WINDOW_KINDS = ("train", "warmup")
#: The kind of :meth:`EnergyMeter.measure_idle`'s window; internal, never a ``begin_window`` kind.
IDLE_KIND = "idle"
COMPONENTS = ("gpu", "cpu", "ram")
#: codecarbon's ``tracking_mode`` values (``BaseEmissionsTracker.__init__`` asserts one of these).
TRACKING_MODES = ("process", "machine")

#: codecarbon ``CPU._mode`` values that read a hardware energy counter (codecarbon/external/hardware.py).
#: Intel Power Gadget and the Windows Energy Meter Interface both expose RAPL.
_CODECARBON_COUNTER_CPU_MODES = frozenset({"intel_rapl", "windows_emi", "intel_power_gadget"})

# codecarbon 3.3.2 literals that no module constant names (tests/test_energy.py checks each one
# against the installed codecarbon by calling its own functions):
#: ``CPU._get_power_from_cpu_load``, machine mode: ``TDP x (0.1 + 0.9 x load^3)``.
CC_MACHINE_IDLE_FRACTION = 0.1
CC_MACHINE_LOAD_EXPONENT = 3
#: ``RAM._calculate_ram_power``: W per DIMM and minimum on ARM; at least 2 DIMMs on x86.
CC_RAM_ARM_W_PER_DIMM = 1.5
CC_RAM_ARM_MIN_W = 3.0
CC_RAM_X86_MIN_DIMMS = 2
#: ``RAM._calculate_ram_power``: the marginal DIMM above 4, 8 and 16 counts this much of one.
CC_RAM_DIMM_STEPS = ((4, 1.0), (8, 0.9), (16, 0.8), (None, 0.7))


@functools.lru_cache(maxsize=1)
def known_country_iso_codes() -> tuple[str, ...]:
    """The ISO 3166-1 alpha-3 codes codecarbon has offline grid data for (empty if codecarbon is missing).
    Read once per process (codecarbon parses its JSON file each time: ~0.1 s)."""
    try:
        from codecarbon.input import DataSource
    except Exception:  # noqa: BLE001
        return ()
    return tuple(sorted(DataSource().get_global_energy_mix_data()))


def codecarbon_intensity_g_per_kwh(country_iso_code: str, forced_g_per_kwh: Optional[float] = None) -> tuple[float, str]:
    """codecarbon's offline carbon intensity for a country, in gCO2e/kWh, and how it was obtained.

    Asks codecarbon's own emissions engine for the emissions of exactly 1 kWh on private
    infrastructure in that country, so the figure is the one its tracker applies (country mix
    from ``global_energy_mix.json``; a user-forced intensity if codecarbon's config sets one).
    No network: no Electricity Maps token is passed.
    """
    import codecarbon
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    iso = country_iso_code.upper()
    source = DataSource()
    mix = source.get_global_energy_mix_data()
    if iso not in mix:
        raise KeyError(iso)
    geo = GeoMetadata(country_iso_code=iso, country_name=mix[iso].get("country_name"))
    engine = Emissions(source, electricitymaps_api_token=None, force_carbon_intensity_g_co2e_kwh=forced_g_per_kwh)
    kg_per_kwh = engine.get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo)
    version = getattr(codecarbon, "__version__", "?")
    if forced_g_per_kwh is not None:
        how = f"energy_total_j x intensity forced in codecarbon config ({forced_g_per_kwh:g} g/kWh)"
    else:
        how = f"energy_total_j x codecarbon {version} offline grid intensity, {iso} mix {mix[iso].get('year', '?')}"
    return kg_per_kwh * 1000.0, how


def _codecarbon_methods(hardware: list[Any]) -> dict[str, str]:
    """Methods per component from the hardware objects codecarbon detected (``tracker._hardware``)."""
    from codecarbon.external.hardware import CPU, GPU, AppleSiliconChip, Raspberry
    from codecarbon.external.ram import RAM

    methods = {"cpu": "none", "ram": "none", "gpu": "none"}
    for hw in hardware:
        if isinstance(hw, CPU):
            # codecarbon/core/resource_tracker.py: RAPL first, else cpu_load (TDP x load) or constant TDP.
            methods["cpu"] = "rapl" if getattr(hw, "_mode", None) in _CODECARBON_COUNTER_CPU_MODES else "codecarbon_estimate"
        elif isinstance(hw, RAM):
            methods["ram"] = "codecarbon_estimate"
        elif isinstance(hw, GPU):
            methods["gpu"] = "codecarbon_estimate"
        elif isinstance(hw, (AppleSiliconChip, Raspberry)):
            # powermetrics / PMIC readings: measured, but not a method DESIGN.md names; codecarbon's figure.
            part = {"Processor": "cpu", "CPU": "cpu", "GPU": "gpu", "RAM": "ram"}.get(getattr(hw, "chip_part", ""), None)
            if part is not None:
                methods[part] = "codecarbon_estimate"
    return methods


def _codecarbon_version() -> str:
    try:
        import codecarbon

        return str(codecarbon.__version__)
    except Exception:  # noqa: BLE001
        return "unknown"


def ram_model_watts(dimms: int, watts_per_dimm: float, min_watts: float) -> float:
    """codecarbon 3.3.2's RAM power for a DIMM count, re-stated (``RAM._calculate_ram_power``):
    full power for the first 4 DIMMs, 0.9 of it for the 5th-8th, 0.8 for the 9th-16th, 0.7 beyond,
    and never below ``min_watts``. Used to state the model and to check it in the tests."""
    total, below = 0.0, 0
    for upto, share in CC_RAM_DIMM_STEPS:
        n = dimms - below if upto is None else max(0, min(dimms, upto) - below)
        total += watts_per_dimm * share * n
        if upto is None or dimms <= upto:
            break
        below = upto
    return max(min_watts, total)


def cpu_tdp_source(cpu_hw: Any, tracker: Any) -> str:
    """Where the TDP codecarbon's CPU object holds (``cpu_hw._tdp``) came from, in words.

    codecarbon 3.3.2 sets it in ``core/resource_tracker.py`` ``set_CPU_tracking``: the user's
    ``force_cpu_power``, else ``core/cpu.py`` ``TDP`` (the ``cpu_power.csv`` row matching the CPU
    name, else ``DEFAULT_POWER_PER_CORE`` W x threads) times the sockets, else
    ``external/hardware.py`` ``POWER_CONSTANT``. Each explanation is checked against the value
    codecarbon holds; one that does not reproduce it is not given.
    """
    tdp = float(cpu_hw._tdp)
    model = getattr(cpu_hw, "_model", None) or ""
    sockets = int(getattr(tracker, "_conf", {}).get("cpu_physical_count") or 1)
    forced = getattr(tracker, "_force_cpu_power", None)
    if forced is not None and float(forced) == tdp:
        return f"force_cpu_power={float(forced):g} W from the codecarbon configuration (not detected)"
    try:
        from codecarbon.core import cpu as cc_cpu
        from codecarbon.input import DataSource

        table = DataSource().get_cpu_power_data()
        # TDP._get_matching_cpu uses no instance state; this is codecarbon's own name matching.
        match = cc_cpu.TDP.__new__(cc_cpu.TDP)._get_matching_cpu(model, table)
        if match:
            row_w = float(table[table["Name"] == match]["TDP"].values[0])
            if row_w * sockets == tdp:
                return (f"codecarbon cpu_power.csv row {match!r}: {row_w:g} W x {sockets} socket(s) "
                        "(codecarbon/core/cpu.py TDP, core/resource_tracker.py set_CPU_tracking)")
        threads = int(getattr(cpu_hw, "_cpu_count", 0) or 0)
        if threads and threads * cc_cpu.DEFAULT_POWER_PER_CORE * sockets == tdp:
            return (f"codecarbon default {cc_cpu.DEFAULT_POWER_PER_CORE} W/thread x {threads} threads x {sockets} "
                    f"socket(s) (codecarbon/core/cpu.py DEFAULT_POWER_PER_CORE, TDP._main): {model!r} is not "
                    "in its cpu_power.csv")
    except Exception as exc:  # noqa: BLE001
        log.debug("TDP source: codecarbon's CPU table unavailable (%s)", exc)
    from codecarbon.external.hardware import POWER_CONSTANT

    if tdp == POWER_CONSTANT:
        return (f"codecarbon generic {POWER_CONSTANT} W (codecarbon/external/hardware.py POWER_CONSTANT): "
                f"no TDP known for {model!r}")
    return f"unexplained: codecarbon holds {tdp:g} W for {model!r} and none of its documented sources gives that"


def _cpu_assumptions(cpu_hw: Any, tracker: Any, *, train_j: Optional[float], train_s: float,
                     process_cpu_s: Optional[float], sample_interval_s: Optional[float]) -> dict[str, Any]:
    """The CPU entry of ``energy_assumptions``, from codecarbon's CPU object."""
    from codecarbon.external.hardware import CONSUMPTION_PERCENTAGE_CONSTANT, MODE_CPU_LOAD

    mode = cpu_hw._mode
    tracking = cpu_hw._tracking_mode
    tdp_w = float(cpu_hw._tdp)
    num_cpus = int(cpu_hw._cpu_count)
    entry: dict[str, Any] = {
        "method": "codecarbon_estimate",
        "codecarbon_mode": mode,
        "tracking_mode": tracking,
    }
    if mode == MODE_CPU_LOAD and tracking == "machine":
        entry.update(
            model=(f"codecarbon cpu_load, machine: W = TDP x ({CC_MACHINE_IDLE_FRACTION:g} + "
                   f"{1 - CC_MACHINE_IDLE_FRACTION:g} x load^{CC_MACHINE_LOAD_EXPONENT}) "
                   "(codecarbon/external/hardware.py CPU._get_power_from_cpu_load)"),
            load="machine: busy share of all CPUs from psutil.cpu_times(), every process on the host",
            idle_fraction_of_tdp=CC_MACHINE_IDLE_FRACTION,
            load_exponent=CC_MACHINE_LOAD_EXPONENT,
        )
    elif mode == MODE_CPU_LOAD:
        entry.update(
            model=("codecarbon cpu_load, process: W = TDP x CPU seconds of this process and its children / "
                   "(wall seconds x logical CPUs), no idle floor (codecarbon/external/hardware.py "
                   "CPU._get_power_from_cpu_load)"),
            load="process: this process and its children (psutil cpu_times user + system)",
            idle_fraction_of_tdp=0.0,
            load_exponent=1,
        )
    elif mode == "constant":
        entry.update(
            model=(f"codecarbon constant: W = {CONSUMPTION_PERCENTAGE_CONSTANT:g} x TDP, load ignored "
                   "(codecarbon/external/hardware.py CONSUMPTION_PERCENTAGE_CONSTANT)"),
            load="none: a constant share of TDP",
        )
    else:
        entry.update(model=f"codecarbon CPU mode {mode!r}", load="unknown")
    entry.update(
        tdp_w=tdp_w,
        tdp_source=cpu_tdp_source(cpu_hw, tracker),
        cpu_model=cpu_hw._model,
        num_logical_cpus=num_cpus,
        num_sockets=tracker._conf.get("cpu_physical_count"),
        sample_interval_s=sample_interval_s,
        mean_power_w=(train_j / train_s) if train_j is not None and train_s > 0 else None,
    )
    if mode == MODE_CPU_LOAD and tracking == "process" and process_cpu_s is not None and num_cpus > 0:
        entry["process_cpu_s"] = process_cpu_s
        # The same model on time.process_time() of this process (children excluded), read at the
        # window edges instead of by codecarbon's 1 s sampler thread.
        entry["expected_j_from_process_cpu_s"] = tdp_w * process_cpu_s / num_cpus
    return entry


def _ram_assumptions(ram_hw: Any, *, watts_seen: list[float], gb_last: Optional[float],
                     train_j: Optional[float], train_s: float) -> dict[str, Any]:
    """The RAM entry of ``energy_assumptions``, from codecarbon's RAM object and the RAM power it
    reported at each ``train`` window end (``tracker._ram_power``)."""
    from codecarbon.core.util import SLURM_JOB_ID
    from codecarbon.external.ram import RAM_SLOT_POWER_X86

    tracking = ram_hw._tracking_mode
    mean_w = (train_j / train_s) if train_j is not None and train_s > 0 else None
    forced = getattr(ram_hw, "_force_ram_power", None)
    if forced is not None:
        return {
            "method": "codecarbon_estimate",
            "model": "constant RAM power from force_ram_power in the codecarbon configuration",
            "tracking_mode": tracking,
            "watts": float(forced),
            "source": "codecarbon configuration force_ram_power (not detected)",
            "mean_power_w": mean_w,
        }
    arm = bool(getattr(ram_hw, "is_arm_cpu", False))
    w_per_dimm = CC_RAM_ARM_W_PER_DIMM if arm else float(RAM_SLOT_POWER_X86)
    min_w = CC_RAM_ARM_MIN_W if arm else CC_RAM_X86_MIN_DIMMS * w_per_dimm
    if tracking == "process":
        basis = "resident memory (RSS) of this process and its children at the last train window end"
    elif SLURM_JOB_ID:
        basis = "the SLURM job's memory allocation (scontrol show job)"
    else:
        basis = "the machine's total memory (psutil.virtual_memory().total)"
    gb = gb_last
    if gb is None:
        gb = ram_hw.process_memory_GB if tracking == "process" else ram_hw.machine_memory_GB
    dimms = int(ram_hw._estimate_dimm_count(gb))
    return {
        "method": "codecarbon_estimate",
        "model": ("codecarbon RAM: W = max(min_watts, watts_per_dimm x DIMMs), the 5th-8th DIMM at 0.9, "
                  "9th-16th at 0.8, beyond at 0.7 of watts_per_dimm; DIMMs guessed from a memory size "
                  "(codecarbon/external/ram.py RAM._calculate_ram_power, RAM._estimate_dimm_count)"),
        "tracking_mode": tracking,
        "load": f"{tracking}: {basis}",
        "gb": gb,
        "gb_basis": f"{basis}; GB = 2^30 bytes (codecarbon B_TO_GB)",
        "dimms": dimms,
        "watts_per_dimm": w_per_dimm,
        "min_watts": min_w,
        "watts": watts_seen[-1] if watts_seen else float(ram_hw._calculate_ram_power(gb)),
        "watts_min": min(watts_seen) if watts_seen else None,
        "watts_max": max(watts_seen) if watts_seen else None,
        "source": (f"{w_per_dimm:g} W per DIMM: codecarbon/external/ram.py "
                   + ("ARM literal" if arm else "RAM_SLOT_POWER_X86")
                   + f"; at least {min_w:g} W; the DIMMs are not read (codecarbon never reads SMBIOS), "
                   f"their number is guessed from {basis}"),
        "mean_power_w": mean_w,
    }


def _gpu_assumptions(gpu_hw: Any, *, train_j: Optional[float], train_s: float) -> dict[str, Any]:
    """The GPU entry of ``energy_assumptions`` when codecarbon's GPU figure is used (no NVML meter)."""
    return {
        "method": "codecarbon_estimate",
        "model": ("codecarbon GPU: each device's energy counter (NVML nvmlDeviceGetTotalEnergyConsumption or "
                  "AMD SMI) differenced per measurement, averaged power x time where a device has no counter "
                  "(codecarbon/core/gpu_device.py GPUDevice.delta)"),
        "tracking_mode": "machine: whole devices, whatever tracking_mode says",
        "gpu_ids": [str(i) for i in (getattr(gpu_hw, "gpu_ids", None) or [])],
        "source": "codecarbon's reading of the device, not our NVML meter (unavailable on this device)",
        "mean_power_w": (train_j / train_s) if train_j is not None and train_s > 0 else None,
    }


def _sum_known(values: Any) -> Optional[float]:
    """Sum of the values that are not None; None when all are (null, never a plausible 0)."""
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


class EnergyMeter:
    """GPU energy from NVML, CPU/RAM (and GPU fallback) energy and CO2 from codecarbon, per window kind.

    Windows: ``begin_window(kind)``/``end_window()`` around each segment, after the caller's
    device synchronisation, one open at a time; ``kind`` is ``train`` or ``warmup``. Both calls
    cost about 1 ms (codecarbon ``start_task``/``stop_task`` plus two NVML reads). codecarbon's
    set-up (hardware detection) happens in ``__init__``. :meth:`measure_idle` meters an idle
    window, once, before training.

    Failures of codecarbon never crash a run: the affected components become null with method
    ``none`` and a warning is logged. An unknown country raises :class:`~harness.errors.UserError`.

    Args:
        device: The device the run trains on (a CUDA device gets an NVML meter).
        output_dir: The run folder, where codecarbon writes ``emissions.csv``.
        country_iso_code: ISO 3166-1 alpha-3 code for codecarbon's offline grid intensity.
        use_codecarbon: False: no CPU/RAM energy and no CO2 (null, method ``none``).
        measure_power_secs: codecarbon's periodic measurement interval; between tasks only, so
            it does not change the windows' figures (codecarbon samples CPU power every 1 s).
        nvml_sample_interval_s: NVML power-sampling period, where the counter is missing.
        tracking_mode: codecarbon's ``tracking_mode`` (``process`` or ``machine``; see
            :class:`harness.config.CodecarbonTrackingMode`).
    """

    #: Window kinds this meter measures (harness.measure.meter.Meters skips the others).
    kinds = ENERGY_WINDOW_KINDS

    def __init__(
        self,
        *,
        device: torch.device,
        output_dir: Path,
        country_iso_code: str,
        use_codecarbon: bool = True,
        measure_power_secs: float = 1.0,
        nvml_sample_interval_s: float = 0.1,
        tracking_mode: str = "process",
    ):
        self.device = torch.device(device)
        self.output_dir = Path(output_dir)
        self.country_iso_code = str(country_iso_code).strip().upper()
        self.use_codecarbon = bool(use_codecarbon)
        self.tracking_mode = str(getattr(tracking_mode, "value", tracking_mode))
        if self.tracking_mode not in TRACKING_MODES:
            raise ValueError(f"tracking_mode={tracking_mode!r}; valid: {', '.join(TRACKING_MODES)}")
        #: Closed windows of every kind (train, warmup, idle): names codecarbon's tasks.
        self.num_windows = 0
        self.num_windows_by_kind = dict.fromkeys((*ENERGY_WINDOW_KINDS, IDLE_KIND), 0)
        #: codecarbon's own description of what it tracks, e.g. ["RAM()", "CPU(Cpu Load)"].
        self.codecarbon_hardware: list[str] = []
        # kind, perf_counter at begin, GPU per-device totals at begin, process CPU seconds at begin
        self._open: Optional[tuple[str, float, Optional[list[float]], float]] = None
        self._seconds = dict.fromkeys(self.num_windows_by_kind, 0.0)
        self._process_cpu_s = dict.fromkeys(self.num_windows_by_kind, 0.0)
        self._finished: Optional[dict] = None
        self._closed = False

        self._check_country()

        # GPU: our NVML meter, for the CUDA device the run uses.
        self._gpu: Optional[GpuEnergyMeter] = None
        if self.device.type == "cuda":
            index = self.device.index
            if index is None:
                index = torch.cuda.current_device() if torch.cuda.is_available() else 0
            self._gpu = GpuEnergyMeter([index], sample_interval_s=nvml_sample_interval_s)
            if self._gpu.method == "none":
                log.warning("GPU energy on %s: none (%s)", self.device, self._gpu.failure_reason)
        self.driver_version: Optional[str] = self._gpu.driver_version if self._gpu else None
        num_gpus = len(self._gpu.device_indices) if self._gpu is not None else 0
        self._gpu_j = {k: [0.0] * num_gpus for k in self.num_windows_by_kind}

        # CPU/RAM (and the GPU fallback): codecarbon.
        self._tracker: Any = None
        self._cc_methods = {"cpu": "none", "ram": "none", "gpu": "none"}
        self._cc_j = {k: {"cpu": 0.0, "ram": 0.0, "gpu": 0.0} for k in self.num_windows_by_kind}
        #: codecarbon's RAM power (W) at each train window end, and the memory size it was sized on.
        self._ram_w_train: list[float] = []
        self._ram_gb_last: Optional[float] = None
        self._cc_failed = False
        self._cc_stopped = False
        self._cc_sample_interval_s: Optional[float] = None
        self._intensity_g_per_kwh: Optional[float] = None
        self._co2_method = "none"
        if self.use_codecarbon:
            self._start_codecarbon(measure_power_secs)

    # -- set-up

    def _check_country(self) -> None:
        codes = known_country_iso_codes()
        if codes and self.country_iso_code not in codes:
            from harness.errors import UserError

            raise UserError(
                f"measure.country_iso_code={self.country_iso_code!r} has no codecarbon offline grid data; "
                f"valid choices: {', '.join(codes)}"
            )

    def _cc_gpu_ids(self) -> Optional[list]:
        """The GPU ids codecarbon should track (NVML numbering or UUIDs), None for its default."""
        if self.device.type != "cuda" or self._gpu is None:
            return None
        index = self._gpu.device_indices[0]
        try:
            entry = _visible_device_entry(index)
        except IndexError:
            return None
        return [index] if entry is None else [entry]

    def _start_codecarbon(self, measure_power_secs: float) -> None:
        # Quiet before construction: codecarbon logs at INFO/WARNING before it applies log_level.
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        try:
            from codecarbon import OfflineEmissionsTracker
            from codecarbon.output_methods.base_output import OutputMethod

            self.output_dir.mkdir(parents=True, exist_ok=True)
            gpu_ids = self._cc_gpu_ids()
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=self.country_iso_code,
                output_dir=str(self.output_dir),
                output_file="emissions.csv",
                # Only the CSV: no API, Prometheus or HTTP endpoint, whatever ~/.codecarbon.config says.
                output_methods=[OutputMethod.CSV],
                emissions_endpoint=None,
                electricitymaps_api_token=None,  # a token would make it call Electricity Maps
                log_level="error",
                measure_power_secs=float(measure_power_secs),
                tracking_mode=self.tracking_mode,
                pue=1.0,  # IT energy only, like the NVML figure it is added to
                allow_multiple_runs=True,
                project_name="computelimits",
                # Names codecarbon's per-task file: emissions_energy_windows_<run_id>.csv, one row per
                # window, named <kind>_<n> (train, warmup, idle).
                experiment_name="energy_windows",
                **({"gpu_ids": gpu_ids} if gpu_ids is not None else {}),
            )
            # Hardware detection now, not in the first window (it takes ~0.2 s).
            self._tracker.get_detected_hardware()
            # codecarbon's CPU/GPU power sampler period (its own 1 s; stop() discards the scheduler).
            sampler = getattr(self._tracker, "_scheduler_monitor_power", None)
            self._cc_sample_interval_s = getattr(sampler, "interval", None)
            hardware = list(getattr(self._tracker, "_hardware", []))
            self.codecarbon_hardware = [repr(h) for h in hardware]
            self._cc_methods = _codecarbon_methods(hardware)
        except Exception as exc:  # noqa: BLE001 - codecarbon must never crash a run
            self._codecarbon_failed(f"set-up failed: {type(exc).__name__}: {exc}")
        try:
            forced = getattr(self._tracker, "force_carbon_intensity_g_co2e_kwh", None) if self._tracker else None
            self._intensity_g_per_kwh, self._co2_method = codecarbon_intensity_g_per_kwh(self.country_iso_code, forced)
        except Exception as exc:  # noqa: BLE001
            log.warning("CO2: no codecarbon carbon intensity for %s (%s: %s); co2_kg is null",
                        self.country_iso_code, type(exc).__name__, exc)
            self._intensity_g_per_kwh, self._co2_method = None, "none"

    def _codecarbon_failed(self, reason: str) -> None:
        if not self._cc_failed:
            log.warning("codecarbon: %s; CPU/RAM energy is null (method none)", reason)
        self._cc_failed = True
        self._cc_methods = {"cpu": "none", "ram": "none", "gpu": "none"}

    def _hardware(self, kind: str) -> Any:
        """codecarbon's detected hardware object of a kind ("CPU", "RAM", "GPU"), or None."""
        for hw in getattr(self._tracker, "_hardware", None) or []:
            if type(hw).__name__ == kind:
                return hw
        return None

    # -- windows

    @property
    def window_open(self) -> Optional[str]:
        """The kind of the open window, or None."""
        return None if self._open is None else self._open[0]

    def begin_window(self, kind: str = "train") -> None:
        """Open a window of ``kind`` (``train`` or ``warmup``). Call right after the device synchronisation."""
        if kind not in ENERGY_WINDOW_KINDS:
            raise ValueError(f"EnergyMeter.begin_window: kind={kind!r}; valid: {', '.join(ENERGY_WINDOW_KINDS)}")
        self._begin(kind)

    def _begin(self, kind: str) -> None:
        if self._open is not None:
            raise RuntimeError(f"EnergyMeter.begin_window({kind!r}): a {self._open[0]!r} window is already open")
        if self._finished is not None or self._closed:
            raise RuntimeError("EnergyMeter.begin_window: the meter is finished")
        gpu_before = self._gpu.per_device_j() if self._gpu is not None else None
        # The window's seconds (for idle power and energy above idle) span the NVML window, the
        # tighter of the two; codecarbon's task starts within about 1 ms of it.
        start_s = time.perf_counter()
        if self._gpu is not None:
            self._gpu.begin_window()
        if self._tracker is not None and not self._cc_failed:
            try:
                self._tracker.start_task(f"{kind}_{self.num_windows_by_kind[kind]}")
            except Exception as exc:  # noqa: BLE001
                self._codecarbon_failed(f"start_task failed: {type(exc).__name__}: {exc}")
        # CPU time of this process (all threads, children excluded): the check on codecarbon's
        # process-mode CPU figure. time.process_time() is CLOCK_PROCESS_CPUTIME_ID on Linux.
        self._open = (kind, start_s, gpu_before, time.process_time())

    def end_window(self) -> None:
        """Close the open window (right after the device synchronisation) and add its energy to its kind."""
        if self._open is None:
            raise RuntimeError("EnergyMeter.end_window: no window is open")
        kind, start_s, gpu_before, cpu_before_s = self._open
        self._open = None
        self._process_cpu_s[kind] += time.process_time() - cpu_before_s
        if self._gpu is not None:
            self._gpu.end_window()  # first: the NVML read is the one closest to the sync
            gpu_after = self._gpu.per_device_j()
            if gpu_before is not None and gpu_after is not None:
                self._gpu_j[kind] = [t + a - b for t, a, b in zip(self._gpu_j[kind], gpu_after, gpu_before)]
        self._seconds[kind] += time.perf_counter() - start_s
        if self._tracker is not None and not self._cc_failed:
            try:
                data = self._tracker.stop_task()
                if data is None:
                    raise RuntimeError("stop_task returned no data (see codecarbon's log)")
                # codecarbon reports energy in kWh (codecarbon/output_methods/emissions_data.py).
                window_j = {}
                for part in ("cpu", "ram", "gpu"):
                    kwh = float(getattr(data, f"{part}_energy"))
                    if not kwh >= 0:  # also catches NaN
                        raise ValueError(f"{part}_energy={kwh!r} kWh")
                    window_j[part] = kwh * JOULES_PER_KWH
                for part, joules in window_j.items():
                    self._cc_j[kind][part] += joules
                if kind == "train":
                    self._note_ram()
            except Exception as exc:  # noqa: BLE001
                self._codecarbon_failed(f"stop_task failed: {type(exc).__name__}: {exc}")
        self.num_windows_by_kind[kind] += 1
        self.num_windows += 1

    def _note_ram(self) -> None:
        """Record the RAM power codecarbon just used (its one RAM reading per task, at stop_task) and
        the memory size it was sized on, read again now (the same property codecarbon read)."""
        ram = self._hardware("RAM")
        if ram is None:
            return
        try:
            self._ram_w_train.append(float(self._tracker._ram_power.W))
            if getattr(ram, "_force_ram_power", None) is None:
                self._ram_gb_last = float(
                    ram.process_memory_GB if ram._tracking_mode == "process" else ram.machine_memory_GB
                )
        except Exception as exc:  # noqa: BLE001 - only the record suffers
            log.debug("RAM assumptions: could not read codecarbon's RAM state (%s)", exc)

    def measure_idle(self, seconds: float) -> None:
        """Meter an idle window of ``seconds`` (this thread sleeps) with the same meters; once, before training.

        Its power per component gives ``idle_power_w`` and ``energy_above_idle_j`` in :meth:`finish`.
        For an estimated component that power is the model's, not a measurement (recorded in
        ``energy_assumptions``).
        """
        seconds = float(seconds)
        if not seconds > 0:
            raise ValueError(f"EnergyMeter.measure_idle: seconds={seconds!r}; must be > 0")
        self._begin(IDLE_KIND)
        try:
            time.sleep(seconds)
        finally:
            self.end_window()

    # -- results

    def _gpu_value(self, kind: str) -> tuple[Optional[float], str, Optional[list[float]]]:
        if self._gpu is not None and self._gpu.method != "none":
            per_device = list(self._gpu_j[kind])
            return float(sum(per_device)), self._gpu.method, per_device
        # Fallback: codecarbon's GPU figure (e.g. a ROCm device, which NVML cannot see). Never on a CPU run.
        if self.device.type != "cpu" and self._cc_methods["gpu"] != "none":
            return self._cc_j[kind]["gpu"], "codecarbon_estimate", None
        return None, "none", None

    def _component(self, kind: str, part: str) -> tuple[Optional[float], str]:
        method = self._cc_methods[part]
        return (None, "none") if method == "none" else (self._cc_j[kind][part], method)

    def _energy_j(self, kind: str) -> dict[str, Optional[float]]:
        """Energy per component over the closed windows of ``kind``; null where not measured or no window closed."""
        if self.num_windows_by_kind[kind] == 0:
            return dict.fromkeys(COMPONENTS)
        return {
            "gpu": self._gpu_value(kind)[0],
            "cpu": self._component(kind, "cpu")[0],
            "ram": self._component(kind, "ram")[0],
        }

    def _co2_kg(self, total_j: Optional[float]) -> Optional[float]:
        if total_j is None or self._intensity_g_per_kwh is None:
            return None
        # kWh x g/kWh = g; / 1000 = kg
        return total_j / JOULES_PER_KWH * self._intensity_g_per_kwh / 1000.0

    def so_far(self) -> dict:
        """Energy (J) and CO2 (kg) over the closed ``train`` windows so far (null before the first). No I/O."""
        parts = self._energy_j("train")
        total_j = _sum_known(parts.values())
        return {
            "energy_gpu_j": parts["gpu"],
            "energy_cpu_j": parts["cpu"],
            "energy_ram_j": parts["ram"],
            "energy_total_j": total_j,
            "co2_kg": self._co2_kg(total_j),
        }

    def _stop_codecarbon(self) -> None:
        """Stop the tracker once; this is when codecarbon writes ``emissions.csv``."""
        if self._tracker is None or self._cc_stopped:
            return
        self._cc_stopped = True
        try:
            if getattr(self._tracker, "_start_time", None) is None:
                # No window ran: stop() would write nothing, and the run folder promises the file.
                self._tracker.start()
            # stop() measures again if its last measurement is older than 50 ms, which would add
            # the time since the last window (final evaluation, saving) to emissions.csv. Our
            # windows ended at the last stop_task, so tell it that was the last measurement.
            if hasattr(self._tracker, "_last_measured_time"):
                self._tracker._last_measured_time = time.perf_counter()
            self._tracker.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("codecarbon: stop failed (%s: %s); emissions.csv may be missing", type(exc).__name__, exc)

    def _idle_power_w(self) -> Optional[dict[str, Optional[float]]]:
        """Idle power (W) per component from the idle window; None without one."""
        idle_s = self._seconds[IDLE_KIND]
        if self.num_windows_by_kind[IDLE_KIND] == 0 or idle_s <= 0:
            return None
        return {p: (j / idle_s if j is not None else None) for p, j in self._energy_j(IDLE_KIND).items()}

    def _idle_fields(self, train: dict[str, Optional[float]]) -> dict[str, Any]:
        """``idle_power_w`` (all components) and ``energy_above_idle_j``; null without an idle window."""
        by_part = self._idle_power_w()
        if by_part is None:
            return {"idle_power_w": None, "energy_above_idle_j": None}
        above: Optional[float] = None
        measured = [p for p in COMPONENTS if train[p] is not None]
        # Above idle over the same components only: one without an idle power makes it unknown.
        if measured and all(by_part[p] is not None for p in measured) and self.num_windows_by_kind["train"]:
            train_s = self._seconds["train"]
            above = float(sum(train[p] - by_part[p] * train_s for p in measured))
        return {"idle_power_w": _sum_known(by_part.values()), "energy_above_idle_j": above}

    def assumptions(self, train: Optional[dict[str, Optional[float]]] = None,
                    idle_w: Optional[dict[str, Optional[float]]] = None) -> Optional[dict[str, Any]]:
        """``energy_assumptions``: one entry per estimated component (``cpu``, ``ram``, ``gpu`` when
        codecarbon's GPU figure is used), from codecarbon's live objects; None when nothing is estimated."""
        if self._tracker is None or self._cc_failed:
            return None
        train = self._energy_j("train") if train is None else train
        train_s = self._seconds["train"]
        version = _codecarbon_version()
        pue = float(getattr(self._tracker, "_pue", 1.0))
        out: dict[str, Any] = {}
        try:
            cpu = self._hardware("CPU")
            if self._cc_methods["cpu"] == "codecarbon_estimate" and cpu is not None:
                out["cpu"] = _cpu_assumptions(
                    cpu, self._tracker, train_j=train["cpu"], train_s=train_s,
                    process_cpu_s=self._process_cpu_s["train"] if self.num_windows_by_kind["train"] else None,
                    sample_interval_s=self._cc_sample_interval_s,
                )
            elif self._cc_methods["cpu"] == "codecarbon_estimate":  # Apple or Raspberry Pi readings
                out["cpu"] = {"method": "codecarbon_estimate", "model": f"codecarbon {self.codecarbon_hardware}",
                              "source": "codecarbon's platform reading (powermetrics or PMIC), not a TDP model"}
            ram = self._hardware("RAM")
            if self._cc_methods["ram"] == "codecarbon_estimate" and ram is not None:
                out["ram"] = _ram_assumptions(ram, watts_seen=self._ram_w_train, gb_last=self._ram_gb_last,
                                              train_j=train["ram"], train_s=train_s)
            elif self._cc_methods["ram"] == "codecarbon_estimate":
                out["ram"] = {"method": "codecarbon_estimate", "model": f"codecarbon {self.codecarbon_hardware}",
                              "source": "codecarbon's platform reading (Raspberry Pi PMIC), not a DIMM model"}
            if self._gpu_value("train")[1] == "codecarbon_estimate":
                out["gpu"] = _gpu_assumptions(self._hardware("GPU"), train_j=train["gpu"], train_s=train_s)
        except Exception as exc:  # noqa: BLE001 - a missing record must not cost the run its energy
            log.warning("energy_assumptions: could not read codecarbon's state (%s: %s)", type(exc).__name__, exc)
            return {part: {"method": "codecarbon_estimate", "model": "unknown: codecarbon's state was unreadable",
                           "error": f"{type(exc).__name__}: {exc}"}
                    for part in ("cpu", "ram") if self._cc_methods[part] == "codecarbon_estimate"} or None
        for part, entry in out.items():
            entry.update(codecarbon_version=version, pue=pue)
            if idle_w is not None and idle_w.get(part) is not None:
                entry["idle_window_s"] = self._seconds[IDLE_KIND]
                entry["idle_power_w"] = idle_w[part]
                entry["idle_note"] = (
                    "the model's idle figure, not a measurement: the same model over a sleeping window before "
                    "training" + {
                        "cpu": (" (process tracking: only this process's own CPU time while it sleeps, ~0 W)"
                                if self.tracking_mode == "process" else
                                " (machine tracking: TDP x (0.1 + 0.9 x load^3) at the load of every other process)"),
                        "ram": (" (process tracking: the same DIMM guess, sized on this process's resident memory "
                                "while idle)" if self.tracking_mode == "process" else
                                " (machine tracking: the same DIMM guess on the same memory size as training)"),
                    }.get(part, "")
                )
        return out or None

    def finish(self) -> dict:
        """Stop the meters, write codecarbon's ``emissions.csv``, and return the result fields.

        An open window is closed first. Calling it again returns the same dict.
        """
        if self._finished is not None:
            return copy.deepcopy(self._finished)
        if self._open is not None:
            self.end_window()
        self._stop_codecarbon()
        train = self._energy_j("train")
        for part, value in train.items():
            if value == 0.0:  # below the meter's resolution (NVML's counter updates every 20-100 ms): unknown, not 0
                log.warning("energy: %s read 0 J over the training windows; recorded as null (too short to measure)", part)
                train[part] = None
        _, gpu_method, gpu_per_device = self._gpu_value("train")
        if train["gpu"] is None:
            gpu_per_device = None
        if self.num_windows_by_kind["train"] == 0:
            # Nothing was measured: nulls, not zeros. The methods still say what would have been used.
            log.warning("EnergyMeter.finish: no train window was measured; energy is null")
            gpu_per_device = None
        total_j = _sum_known(train.values())
        co2_kg = self._co2_kg(total_j)
        warmup = self._energy_j("warmup")
        idle = self._idle_fields(train)
        self._finished = {
            "energy_gpu_j": train["gpu"],
            "energy_cpu_j": train["cpu"],
            "energy_ram_j": train["ram"],
            "energy_total_j": total_j,
            "energy_gpu_method": gpu_method,
            "energy_cpu_method": self._cc_methods["cpu"],
            "energy_ram_method": self._cc_methods["ram"],
            "energy_gpu_j_per_device": gpu_per_device,
            "warmup_energy_j": _sum_known(warmup.values()),
            **idle,
            "energy_assumptions": self.assumptions(train, self._idle_power_w()),
            "co2_kg": co2_kg,
            "carbon_intensity_g_per_kwh": self._intensity_g_per_kwh,
            "country_iso_code": self.country_iso_code,
            "co2_method": self._co2_method if co2_kg is not None else "none",
            "driver_version": self.driver_version,
        }
        if self._gpu is not None:
            self._gpu.close()
        return copy.deepcopy(self._finished)

    def close(self) -> None:
        """Release everything (sampler thread, NVML, codecarbon). Idempotent; safe on error paths."""
        if self._closed:
            return
        self._closed = True
        if self._open is not None and self._finished is None:
            try:  # an error path left a window open: close it so emissions.csv still adds up
                self.end_window()
            except Exception:  # noqa: BLE001
                self._open = None
        if self._gpu is not None:
            try:
                self._gpu.close()
            except Exception:  # noqa: BLE001
                pass
        self._stop_codecarbon()  # stops codecarbon's threads; on an error path it still writes its CSV

    def __enter__(self) -> "EnergyMeter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
