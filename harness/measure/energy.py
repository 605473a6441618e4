"""Energy and CO2 of the training windows: GPU from NVML (:mod:`harness.measure.nvml`), CPU/RAM and
carbon intensity from codecarbon.

The runner opens one window per training segment (between evaluations), after its device
synchronisation, so every figure here covers training only, never evaluation or warm-up.

CPU and RAM (:class:`EnergyMeter`) come from codecarbon's ``OfflineEmissionsTracker``
(https://docs.codecarbon.io/latest/explanation/methodology/), one ``start_task``/``stop_task``
per window, no network:

- CPU is ``rapl`` when codecarbon read an energy counter (Linux powercap RAPL, Windows EMI,
  Intel Power Gadget), otherwise ``codecarbon_estimate``: its TDP-and-load model (``cpu_load``:
  ``TDP x (0.1 + 0.9 load^3)``, whole machine) or a constant 50% of TDP;
- RAM is always ``codecarbon_estimate``: about 5 W per estimated DIMM (codecarbon 3.x ``RAM``);
- CO2 is ``energy_total_j`` in kWh times codecarbon's offline grid intensity for the country
  (``data/private_infra/global_energy_mix.json``), so CO2 and energy always agree.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch

from harness.measure.nvml import GpuEnergyMeter, _visible_device_entry

log = logging.getLogger(__name__)

#: 1 kWh = 3.6 MJ, by definition of the watt-hour.
JOULES_PER_KWH = 3.6e6

ENERGY_METHODS = ("nvml_counter", "nvml_power_sampling", "rapl", "codecarbon_estimate", "none")

#: codecarbon ``CPU._mode`` values that read a hardware energy counter (codecarbon/external/hardware.py).
#: Intel Power Gadget and the Windows Energy Meter Interface both expose RAPL.
_CODECARBON_COUNTER_CPU_MODES = frozenset({"intel_rapl", "windows_emi", "intel_power_gadget"})


def known_country_iso_codes() -> list[str]:
    """The ISO 3166-1 alpha-3 codes codecarbon has offline grid data for (empty if codecarbon is missing)."""
    try:
        from codecarbon.input import DataSource
    except Exception:  # noqa: BLE001
        return []
    return sorted(DataSource().get_global_energy_mix_data())


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


class EnergyMeter:
    """Everything the runner needs: GPU energy from NVML, CPU/RAM (and GPU fallback) energy and CO2 from codecarbon.

    Windows: ``begin_window``/``end_window`` around each training segment, after the runner's
    device synchronisation. Both cost about 1 ms (codecarbon ``start_task``/``stop_task`` plus
    two NVML reads). codecarbon's set-up (hardware detection) happens in ``__init__``.

    Failures of codecarbon never crash a run: the affected components become null with method
    ``none`` and a warning is logged. An unknown country raises :class:`~harness.errors.UserError`.
    """

    def __init__(
        self,
        *,
        device: torch.device,
        output_dir: Path,
        country_iso_code: str,
        use_codecarbon: bool = True,
        measure_power_secs: float = 1.0,
        nvml_sample_interval_s: float = 0.1,
    ):
        self.device = torch.device(device)
        self.output_dir = Path(output_dir)
        self.country_iso_code = str(country_iso_code).strip().upper()
        self.use_codecarbon = bool(use_codecarbon)
        self.num_windows = 0
        #: codecarbon's own description of what it tracks, e.g. ["RAM()", "CPU(Cpu Load)"].
        self.codecarbon_hardware: list[str] = []
        self._window_open = False
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

        # CPU/RAM (and the GPU fallback): codecarbon.
        self._tracker: Any = None
        self._cc_methods = {"cpu": "none", "ram": "none", "gpu": "none"}
        self._cc_j = {"cpu": 0.0, "ram": 0.0, "gpu": 0.0}
        self._cc_failed = False
        self._cc_stopped = False
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
                tracking_mode="machine",
                pue=1.0,  # IT energy only, like the NVML figure it is added to
                allow_multiple_runs=True,
                project_name="computelimits",
                # Names codecarbon's per-task file: emissions_training_windows_<run_id>.csv, one row per window.
                experiment_name="training_windows",
                **({"gpu_ids": gpu_ids} if gpu_ids is not None else {}),
            )
            # Hardware detection now, not in the first window (it takes ~0.2 s).
            self._tracker.get_detected_hardware()
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

    # -- windows

    def begin_window(self) -> None:
        """Open a window. Call right after the runner's device synchronisation."""
        if self._window_open:
            raise RuntimeError("EnergyMeter.begin_window: a window is already open")
        if self._finished is not None or self._closed:
            raise RuntimeError("EnergyMeter.begin_window: the meter is finished")
        self._window_open = True
        if self._gpu is not None:
            self._gpu.begin_window()
        if self._tracker is not None and not self._cc_failed:
            try:
                self._tracker.start_task(f"window_{self.num_windows}")
            except Exception as exc:  # noqa: BLE001
                self._codecarbon_failed(f"start_task failed: {type(exc).__name__}: {exc}")

    def end_window(self) -> None:
        """Close the window (right after the device synchronisation) and add its energy."""
        if not self._window_open:
            raise RuntimeError("EnergyMeter.end_window: no window is open")
        self._window_open = False
        if self._gpu is not None:
            self._gpu.end_window()  # first: the NVML read is the one closest to the sync
        if self._tracker is not None and not self._cc_failed:
            try:
                data = self._tracker.stop_task()
                if data is None:
                    raise RuntimeError("stop_task returned no data (see codecarbon's log)")
                # codecarbon reports energy in kWh (codecarbon/output_methods/emissions_data.py).
                for part in ("cpu", "ram", "gpu"):
                    kwh = float(getattr(data, f"{part}_energy"))
                    if not kwh >= 0:  # also catches NaN
                        raise ValueError(f"{part}_energy={kwh!r} kWh")
                    self._cc_j[part] += kwh * JOULES_PER_KWH
            except Exception as exc:  # noqa: BLE001
                self._codecarbon_failed(f"stop_task failed: {type(exc).__name__}: {exc}")
        self.num_windows += 1

    # -- results

    def _gpu_value(self) -> tuple[Optional[float], str, Optional[list[float]]]:
        if self._gpu is not None and self._gpu.method != "none":
            return self._gpu.total_j(), self._gpu.method, self._gpu.per_device_j()
        # Fallback: codecarbon's GPU figure (e.g. a ROCm device, which NVML cannot see). Never on a CPU run.
        if self.device.type != "cpu" and self._cc_methods["gpu"] != "none":
            return self._cc_j["gpu"], "codecarbon_estimate", None
        return None, "none", None

    def _component(self, part: str) -> tuple[Optional[float], str]:
        method = self._cc_methods[part]
        return (None, "none") if method == "none" else (self._cc_j[part], method)

    def so_far(self) -> dict:
        """Energy (J) and CO2 (kg) over the closed windows so far. Pure arithmetic, no I/O."""
        gpu_j, _, _ = self._gpu_value()
        cpu_j, _ = self._component("cpu")
        ram_j, _ = self._component("ram")
        known = [v for v in (gpu_j, cpu_j, ram_j) if v is not None]
        total_j = float(sum(known)) if known else None
        co2_kg = None
        if total_j is not None and self._intensity_g_per_kwh is not None:
            # kWh x g/kWh = g; / 1000 = kg
            co2_kg = total_j / JOULES_PER_KWH * self._intensity_g_per_kwh / 1000.0
        return {
            "energy_gpu_j": gpu_j,
            "energy_cpu_j": cpu_j,
            "energy_ram_j": ram_j,
            "energy_total_j": total_j,
            "co2_kg": co2_kg,
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

    def finish(self) -> dict:
        """Stop the meters, write codecarbon's ``emissions.csv``, and return the result fields.

        An open window is closed first. Calling it again returns the same dict.
        """
        if self._finished is not None:
            return dict(self._finished)
        if self._window_open:
            self.end_window()
        self._stop_codecarbon()
        gpu_j, gpu_method, gpu_per_device = self._gpu_value()
        cpu_j, cpu_method = self._component("cpu")
        ram_j, ram_method = self._component("ram")
        if self.num_windows == 0:
            # Nothing was measured: nulls, not zeros. The methods still say what would have been used.
            log.warning("EnergyMeter.finish: no window was measured; energy is null")
            gpu_j = cpu_j = ram_j = None
            gpu_per_device = None
        known = [v for v in (gpu_j, cpu_j, ram_j) if v is not None]
        total_j = float(sum(known)) if known else None
        intensity = self._intensity_g_per_kwh
        co2_kg = None
        if total_j is not None and intensity is not None:
            co2_kg = total_j / JOULES_PER_KWH * intensity / 1000.0
        self._finished = {
            "energy_gpu_j": gpu_j,
            "energy_cpu_j": cpu_j,
            "energy_ram_j": ram_j,
            "energy_total_j": total_j,
            "energy_gpu_method": gpu_method,
            "energy_cpu_method": cpu_method,
            "energy_ram_method": ram_method,
            "energy_gpu_j_per_device": gpu_per_device,
            "co2_kg": co2_kg,
            "carbon_intensity_g_per_kwh": intensity,
            "country_iso_code": self.country_iso_code,
            "co2_method": self._co2_method if co2_kg is not None else "none",
            "driver_version": self.driver_version,
        }
        if self._gpu is not None:
            self._gpu.close()
        return dict(self._finished)

    def close(self) -> None:
        """Release everything (sampler thread, NVML, codecarbon). Idempotent; safe on error paths."""
        if self._closed:
            return
        self._closed = True
        if self._window_open and self._finished is None:
            try:  # an error path left a window open: close it so emissions.csv still adds up
                self.end_window()
            except Exception:  # noqa: BLE001
                self._window_open = False
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
