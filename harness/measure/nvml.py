"""GPU energy over measurement windows from NVML.

GPU (:class:`GpuEnergyMeter`), best method first:

- ``nvml_counter``: ``nvmlDeviceGetTotalEnergyConsumption``, "total energy consumption for this GPU
  in millijoules (mJ) since the driver was last reloaded", Volta or newer
  (https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html). A window is the
  difference of two reads. The counter updates every 20-100 ms on recent GPUs
  (https://petsc.org/main/manualpages/Log/PetscLogGpuEnergyMeter), so a window shorter than
  that can read as 0.
- ``nvml_power_sampling``: ``nvmlDeviceGetPowerUsage`` ("power usage ... in milliwatts", same page)
  read every ``sample_interval_s`` by a daemon thread while a window is open, plus one read at
  each end, integrated with the trapezoid rule. Its error, for the GPUs that need it (pre-Volta,
  or where the counter is unsupported):

  * sensor: "On Fermi and Kepler GPUs the reading is accurate to within +/- 5% of current power
    draw"; on Ampere (except GA100) and newer the reading is a 1 s average (NVML docs, same page),
    so it lags the true power by about 0.5 s and each window edge can be off by about
    0.5 s x (power step), i.e. about 1% of a 60 s window that starts from idle;
  * sampling: the trapezoid rule is exact for power that is linear between samples; its error
    comes from transients shorter than the interval (0.1 s by default), which average out over a
    steady training loop but not over a window of a few samples;
  * Yang et al. (arXiv 2312.02741) found that A100/H100 sensors see only ~25% of the runtime;
    those GPUs have the counter, so this method is only their last resort.
- ``none``: NVML missing, not initialisable, no device, or neither query supported. Energy is
  then null, never 0 (DESIGN.md).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Optional

import torch

log = logging.getLogger(__name__)

#: NVML reports energy in mJ and power in mW (NVML API reference, nvmlDeviceQueries).
_MILLI = 1e-3


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible_device_entry(cuda_index: int) -> Optional[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entry behind a CUDA index, or None when the variable is unset."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None or not env.strip():
        return None
    entries = [e.strip() for e in env.split(",") if e.strip()]
    if cuda_index >= len(entries):
        raise IndexError(f"CUDA device {cuda_index} is not in CUDA_VISIBLE_DEVICES={env!r}")
    return entries[cuda_index]


def _nvml_handle(nvml: Any, cuda_index: int) -> Any:
    """The NVML handle of a CUDA device index.

    NVML numbers devices in PCI order and ignores ``CUDA_VISIBLE_DEVICES``, while CUDA renumbers
    the visible devices (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). The device UUID
    is the same in both, so that is tried first; then the ``CUDA_VISIBLE_DEVICES`` entry; then
    the index itself.
    """
    try:
        if torch.cuda.is_available() and cuda_index < torch.cuda.device_count():
            uuid = str(torch.cuda.get_device_properties(cuda_index).uuid)
            if not uuid.startswith(("GPU-", "MIG-")):
                uuid = "GPU-" + uuid
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception as exc:  # noqa: BLE001 - any failure here just means "try the next way"
        log.debug("NVML handle by UUID failed for cuda:%d: %s", cuda_index, exc)
    entry = _visible_device_entry(cuda_index)
    if entry is None:
        return nvml.nvmlDeviceGetHandleByIndex(cuda_index)
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    return nvml.nvmlDeviceGetHandleByUUID(entry)


def _trapezoid_j(samples: list[tuple[float, list[float]]]) -> list[float]:
    """Energy in J per device from ``(time_s, [watts per device])`` samples, trapezoid rule."""
    samples = sorted(samples, key=lambda s: s[0])
    if not samples:
        return []
    energy = [0.0] * len(samples[0][1])
    for (t0, p0), (t1, p1) in zip(samples, samples[1:]):
        dt = t1 - t0
        for d in range(len(energy)):
            energy[d] += 0.5 * (p0[d] + p1[d]) * dt
    return energy


class GpuEnergyMeter:
    """GPU energy over measurement windows via NVML, for the given CUDA device indices.

    ``method`` is decided at init: ``nvml_counter`` when the energy counter works on every
    device, else ``nvml_power_sampling`` when power readings work on every device, else
    ``none``. A read that fails later turns the meter to ``none`` (with a warning): a total
    that silently misses windows would be a plausible undercount. No method raises on NVML
    trouble; calling ``begin_window`` twice or ``end_window`` without a window is a bug and
    raises ``RuntimeError``.

    Totals cover closed windows only.
    """

    def __init__(self, device_indices: list[int], sample_interval_s: float = 0.1):
        if sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s={sample_interval_s!r}: must be > 0")
        self.device_indices = [int(i) for i in device_indices]
        self.sample_interval_s = float(sample_interval_s)
        self.method: str = "none"
        self.driver_version: Optional[str] = None
        #: Why the meter is (or became) ``none``; None while it works.
        self.failure_reason: Optional[str] = None
        self.num_windows = 0
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._totals_j = [0.0] * len(self.device_indices)
        self._window_open = False
        self._begin_mj: list[int] = []
        self._window_start_s = 0.0
        self._samples: list[tuple[float, list[float]]] = []
        self._sample_errors: list[BaseException] = []
        self._sampler: Optional[threading.Thread] = None
        self._stop_sampling = threading.Event()
        self._warned_zero = False
        self._closed = False
        self._init_nvml()

    # -- set-up

    def _init_nvml(self) -> None:
        if not self.device_indices:
            self.failure_reason = "no GPU device indices"
            return
        try:
            import pynvml  # nvidia-ml-py
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            self.failure_reason = f"pynvml not importable: {exc}"
            log.info("GPU energy: none (%s)", self.failure_reason)
            return
        try:
            pynvml.nvmlInit()  # NVMLError_LibraryNotFound / _DriverNotLoaded on machines without NVIDIA
        except Exception as exc:  # noqa: BLE001
            self.failure_reason = f"nvmlInit failed: {type(exc).__name__}: {exc}"
            log.info("GPU energy: none (%s)", self.failure_reason)
            return
        self._nvml = pynvml
        try:
            self.driver_version = _as_str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001 - the version is nice to have
            self.driver_version = None
        try:
            self._handles = [_nvml_handle(pynvml, i) for i in self.device_indices]
        except Exception as exc:  # noqa: BLE001
            self._give_up(f"no NVML handle for CUDA devices {self.device_indices}: {type(exc).__name__}: {exc}")
            return
        if self._all_work(pynvml.nvmlDeviceGetTotalEnergyConsumption):
            self.method = "nvml_counter"
        elif self._all_work(pynvml.nvmlDeviceGetPowerUsage):
            self.method = "nvml_power_sampling"
            log.warning(
                "GPU energy: NVML energy counter unsupported on devices %s (needs Volta or newer); "
                "falling back to power sampling every %.3f s",
                self.device_indices, self.sample_interval_s,
            )
        else:
            self._give_up("neither the NVML energy counter nor NVML power readings are supported")
            return
        log.info("GPU energy: %s on CUDA devices %s (driver %s)", self.method, self.device_indices, self.driver_version)

    def _all_work(self, query: Any) -> bool:
        for handle in self._handles:
            try:
                query(handle)
            except Exception:  # noqa: BLE001 - NVMLError_NotSupported, _FunctionNotFound, ...
                return False
        return True

    def _give_up(self, reason: str) -> None:
        self.failure_reason = reason
        self.method = "none"
        log.warning("GPU energy: none (%s)", reason)
        self._shutdown_nvml()

    def _shutdown_nvml(self) -> None:
        if self._nvml is not None:
            try:
                # Reference counted: codecarbon's own nvmlInit stays valid
                # (NVML docs: "Shutdown only occurs when the reference count reaches zero").
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None

    # -- reads

    def _read_energy_mj(self) -> list[int]:
        return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles]

    def _read_power_sample(self) -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        watts = [self._nvml.nvmlDeviceGetPowerUsage(h) * _MILLI for h in self._handles]
        t1 = time.perf_counter()
        return 0.5 * (t0 + t1), watts  # stamped at the middle of the reads

    def _sample_loop(self) -> None:
        while not self._stop_sampling.wait(self.sample_interval_s):
            try:
                self._samples.append(self._read_power_sample())
            except Exception as exc:  # noqa: BLE001 - reported by end_window
                self._sample_errors.append(exc)
                return

    def _stop_sampler(self) -> None:
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    # -- windows

    def begin_window(self) -> None:
        """Open a window (call after the device synchronisation)."""
        if self._window_open:
            raise RuntimeError("GpuEnergyMeter.begin_window: a window is already open")
        if self._closed:
            raise RuntimeError("GpuEnergyMeter.begin_window: the meter is closed")
        self._window_open = True
        self._window_start_s = time.perf_counter()
        if self.method == "nvml_counter":
            try:
                self._begin_mj = self._read_energy_mj()
            except Exception as exc:  # noqa: BLE001
                self._give_up(f"energy counter read failed at window start: {type(exc).__name__}: {exc}")
        elif self.method == "nvml_power_sampling":
            try:
                self._samples = [self._read_power_sample()]
            except Exception as exc:  # noqa: BLE001
                self._give_up(f"power read failed at window start: {type(exc).__name__}: {exc}")
                return
            self._sample_errors = []
            self._stop_sampling = threading.Event()
            self._sampler = threading.Thread(target=self._sample_loop, name="nvml-power-sampler", daemon=True)
            self._sampler.start()

    def end_window(self) -> None:
        """Close the window and add its energy, per device, to the totals."""
        if not self._window_open:
            raise RuntimeError("GpuEnergyMeter.end_window: no window is open")
        self._window_open = False
        if self.method == "nvml_counter":
            try:
                end_mj = self._read_energy_mj()
            except Exception as exc:  # noqa: BLE001
                self._give_up(f"energy counter read failed at window end: {type(exc).__name__}: {exc}")
                return
            deltas_j = [(e - b) * _MILLI for b, e in zip(self._begin_mj, end_mj)]
            if any(d < 0 for d in deltas_j):
                # The counter restarts when the driver reloads; the window cannot be recovered.
                self._give_up(f"energy counter went backwards ({self._begin_mj} -> {end_mj} mJ)")
                return
            if not self._warned_zero and any(d == 0 for d in deltas_j):
                self._warned_zero = True
                log.warning(
                    "GPU energy: a %.3f s window read 0 J on some device; the NVML counter updates every "
                    "20-100 ms, so windows that short are undercounted",
                    time.perf_counter() - self._window_start_s,
                )
        elif self.method == "nvml_power_sampling":
            self._stop_sampler()
            if self._sample_errors:
                exc = self._sample_errors[0]
                self._give_up(f"power read failed during a window: {type(exc).__name__}: {exc}")
                return
            try:
                self._samples.append(self._read_power_sample())
            except Exception as exc:  # noqa: BLE001
                self._give_up(f"power read failed at window end: {type(exc).__name__}: {exc}")
                return
            deltas_j = _trapezoid_j(self._samples)
            self._samples = []
        else:
            return
        self._totals_j = [t + d for t, d in zip(self._totals_j, deltas_j)]
        self.num_windows += 1

    @property
    def window_open(self) -> bool:
        return self._window_open

    def total_j(self) -> Optional[float]:
        """Energy in J over all devices and closed windows; None when ``method == "none"``."""
        per_device = self.per_device_j()
        return None if per_device is None else float(sum(per_device))

    def per_device_j(self) -> Optional[list[float]]:
        """Energy in J per device (order of ``device_indices``) over closed windows, or None."""
        if self.method == "none":
            return None
        return list(self._totals_j)

    def close(self) -> None:
        """Stop the sampler thread and release NVML. Idempotent; an open window is dropped."""
        if self._closed:
            return
        self._closed = True
        self._stop_sampler()
        self._window_open = False
        self._shutdown_nvml()

    def __enter__(self) -> "GpuEnergyMeter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
