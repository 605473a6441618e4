"""Energy meters: NVML mocked (present with the counter, counter unsupported, absent), codecarbon for real.

No GPU and no NVML library here, so NVML is a fake ``pynvml`` module put in ``sys.modules``.
codecarbon runs offline on this CPU, into ``tmp_path``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
import types

import pytest
import torch

# Import codecarbon now, with the real pynvml: its gpu module calls nvmlInit at import time, and
# must not pick up a fake one from a test below.
codecarbon = pytest.importorskip("codecarbon")
pd = pytest.importorskip("pandas")

from harness.measure import energy  # noqa: E402
from harness.measure.energy import EnergyMeter
from harness.measure.nvml import GpuEnergyMeter, _trapezoid_j  # noqa: E402

ALLOWED_METHODS = {"nvml_counter", "nvml_power_sampling", "rapl", "codecarbon_estimate", "none"}
RESULT_KEYS = {
    "energy_gpu_j", "energy_cpu_j", "energy_ram_j", "energy_total_j",
    "energy_gpu_method", "energy_cpu_method", "energy_ram_method", "energy_gpu_j_per_device",
    "co2_kg", "carbon_intensity_g_per_kwh", "country_iso_code", "co2_method", "driver_version",
    "warmup_energy_j", "idle_power_w", "energy_above_idle_j",
    "energy_assumptions",
}


# ------------------------------------------------------------------------------------ fake pynvml


def make_fake_pynvml(num_devices=2, counter=True, power=True, init_error=None):
    """A stand-in for nvidia-ml-py with settable readings.

    ``energy_mj[i]`` is device i's counter (mJ); ``power_fn(i, t)`` gives its power in mW at
    ``time.perf_counter()`` t. ``calls`` records (name, handle or argument, t).
    """
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    nv.NVMLError = NVMLError
    nv.NVMLError_NotSupported = NVMLError_NotSupported
    nv.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    nv.energy_mj = [0] * num_devices
    nv.power_fn = lambda i, t: 100_000 * (i + 1)
    nv.calls = []
    nv.num_init = 0
    nv.num_shutdown = 0

    def nvmlInit():
        if init_error is not None:
            raise init_error(nv)
        nv.num_init += 1

    def nvmlShutdown():
        nv.num_shutdown += 1

    def nvmlSystemGetDriverVersion():
        return "555.42.06"

    def nvmlDeviceGetCount():
        return num_devices

    def nvmlDeviceGetHandleByIndex(i):
        nv.calls.append(("handle_by_index", i, time.perf_counter()))
        if not 0 <= i < num_devices:
            raise NVMLError("invalid argument")
        return ("handle", i)

    def nvmlDeviceGetHandleByUUID(uuid):
        nv.calls.append(("handle_by_uuid", uuid, time.perf_counter()))
        return ("handle", int(uuid.rsplit("-", 1)[-1]))

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        nv.calls.append(("energy", handle, time.perf_counter()))
        if not counter:
            raise NVMLError_NotSupported("Not Supported")
        return nv.energy_mj[handle[1]]

    def nvmlDeviceGetPowerUsage(handle):
        t = time.perf_counter()
        nv.calls.append(("power", handle, t))
        if not power:
            raise NVMLError_NotSupported("Not Supported")
        return int(nv.power_fn(handle[1], t))

    for f in (nvmlInit, nvmlShutdown, nvmlSystemGetDriverVersion, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex,
              nvmlDeviceGetHandleByUUID, nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetPowerUsage):
        setattr(nv, f.__name__, f)
    return nv


@pytest.fixture
def fake_nvml(monkeypatch):
    """Install a fake pynvml built with the given options; no CUDA_VISIBLE_DEVICES."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(**kwargs):
        nv = make_fake_pynvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", nv)
        return nv

    return install


# ------------------------------------------------------------------------- GpuEnergyMeter: counter


def test_counter_windows_per_device_and_mj_to_j(fake_nvml):
    nv = fake_nvml(num_devices=2)
    nv.energy_mj[:] = [1_000_000, 5_000_000]
    meter = GpuEnergyMeter([0, 1])
    assert meter.method == "nvml_counter"
    assert meter.driver_version == "555.42.06"
    assert meter.total_j() == 0.0 and meter.per_device_j() == [0.0, 0.0]

    meter.begin_window()
    nv.energy_mj[0] += 2_500  # 2.5 J
    nv.energy_mj[1] += 40_000  # 40 J
    meter.end_window()
    assert meter.per_device_j() == pytest.approx([2.5, 40.0])

    # Between windows (evaluation) the counters move too; that energy must not be counted.
    nv.energy_mj[0] += 999_000
    nv.energy_mj[1] += 999_000

    meter.begin_window()
    nv.energy_mj[0] += 500
    nv.energy_mj[1] += 1_250
    # Mid-window: totals are over closed windows only.
    assert meter.total_j() == pytest.approx(42.5)
    meter.end_window()

    assert meter.per_device_j() == pytest.approx([3.0, 41.25])
    assert meter.total_j() == pytest.approx(44.25)
    assert meter.num_windows == 2
    meter.close()
    meter.close()  # idempotent
    assert nv.num_shutdown == nv.num_init == 1


def test_counter_misuse_raises_and_failure_degrades_to_none(fake_nvml, caplog):
    nv = fake_nvml(num_devices=1)
    meter = GpuEnergyMeter([0])
    with pytest.raises(RuntimeError):
        meter.end_window()
    meter.begin_window()
    with pytest.raises(RuntimeError):
        meter.begin_window()
    nv.energy_mj[0] = -5  # counter went backwards (driver reload): the total is no longer known
    with caplog.at_level(logging.WARNING, logger="harness.measure.nvml"):
        meter.end_window()
    assert meter.method == "none"
    assert meter.total_j() is None and meter.per_device_j() is None
    assert "backwards" in caplog.text
    meter.close()


def test_cuda_visible_devices_maps_cuda_index_to_nvml_index(fake_nvml, monkeypatch):
    nv = fake_nvml(num_devices=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    meter = GpuEnergyMeter([1])
    assert ("handle_by_index", 3) in [c[:2] for c in nv.calls]
    nv.energy_mj[3] = 7_000
    meter.begin_window()
    nv.energy_mj[3] += 3_000
    meter.end_window()
    assert meter.per_device_j() == [3.0]
    meter.close()


# ------------------------------------------------------------------- GpuEnergyMeter: power sampling


def test_trapezoid_rule_on_hand_values():
    # Two devices; power 100 -> 300 W linearly over 2 s, then flat; and a constant 50 W.
    samples = [(0.0, [100.0, 50.0]), (1.0, [200.0, 50.0]), (2.0, [300.0, 50.0]), (3.0, [300.0, 50.0])]
    assert _trapezoid_j(samples) == pytest.approx([400.0 + 300.0, 150.0])
    assert _trapezoid_j(list(reversed(samples))) == pytest.approx([700.0, 150.0])  # order-proof
    assert _trapezoid_j([(0.0, [10.0])]) == [0.0]


def test_counter_unsupported_falls_back_to_power_sampling(fake_nvml):
    nv = fake_nvml(num_devices=2, counter=False)
    t_origin = time.perf_counter()
    # Device 0: a ramp, 100 W + 400 W/s (linear, so the trapezoid rule is exact); device 1: 250 W.
    nv.power_fn = lambda i, t: (100.0 + 400.0 * (t - t_origin)) * 1000 if i == 0 else 250_000
    meter = GpuEnergyMeter([0, 1], sample_interval_s=0.02)
    assert meter.method == "nvml_power_sampling"

    nv.calls.clear()
    meter.begin_window()
    time.sleep(0.3)
    meter.end_window()
    reads = [c for c in nv.calls if c[0] == "power" and c[1] == ("handle", 0)]
    t_first, t_last = reads[0][2], reads[-1][2]
    assert len(reads) >= 6, "the sampler thread should read every 20 ms while the window is open"

    def ramp_integral(a, b):
        return 100.0 * (b - a) + 200.0 * ((b - t_origin) ** 2 - (a - t_origin) ** 2)

    e0, e1 = meter.per_device_j()
    assert e0 == pytest.approx(ramp_integral(t_first, t_last), rel=0.02)
    assert e1 == pytest.approx(250.0 * (t_last - t_first), rel=0.02)

    # No sampling while no window is open (evaluation).
    n = len(nv.calls)
    time.sleep(0.1)
    assert len(nv.calls) == n

    meter.begin_window()
    time.sleep(0.05)
    meter.end_window()
    assert meter.num_windows == 2
    assert meter.per_device_j()[1] > e1
    meter.close()
    assert meter._sampler is None


def test_no_counter_and_no_power_gives_none(fake_nvml):
    nv = fake_nvml(num_devices=1, counter=False, power=False)
    meter = GpuEnergyMeter([0])
    assert meter.method == "none"
    assert meter.total_j() is None
    assert nv.num_shutdown == 1  # released at once
    meter.begin_window()
    meter.end_window()
    assert meter.total_j() is None
    meter.close()


# ------------------------------------------------------------------------ GpuEnergyMeter: absent


def test_pynvml_not_importable_gives_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    meter = GpuEnergyMeter([0])
    assert meter.method == "none"
    assert meter.total_j() is None and meter.per_device_j() is None
    assert meter.driver_version is None
    assert "not importable" in meter.failure_reason
    meter.begin_window()
    meter.end_window()
    assert meter.total_j() is None
    meter.close()


def test_nvml_library_not_found_gives_none(fake_nvml):
    fake_nvml(init_error=lambda nv: nv.NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    meter = GpuEnergyMeter([0])
    assert meter.method == "none"
    assert meter.total_j() is None
    assert "LibraryNotFound" in meter.failure_reason
    meter.close()


def test_no_devices_gives_none(fake_nvml):
    nv = fake_nvml()
    meter = GpuEnergyMeter([])
    assert meter.method == "none" and meter.total_j() is None
    assert nv.num_init == 0


# ------------------------------------------------------------------- EnergyMeter with codecarbon


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    # codecarbon reads ./.codecarbon.config: keep the test's cwd clean.
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cpu_run_with_codecarbon(in_tmp):
    out = in_tmp / "run"
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=out, country_iso_code="USA")
    for _ in range(2):
        meter.begin_window()
        busy(0.15)
        meter.end_window()
        so_far = meter.so_far()
        time.sleep(0.1)  # "evaluation", outside the windows
    res = meter.finish()
    meter.close()
    meter.close()

    assert set(res) == RESULT_KEYS
    assert (out / "emissions.csv").is_file()
    assert res["energy_gpu_j"] is None and res["energy_gpu_method"] == "none"
    assert res["energy_gpu_j_per_device"] is None
    for part in ("cpu", "ram"):
        assert res[f"energy_{part}_method"] in ALLOWED_METHODS - {"none", "nvml_counter", "nvml_power_sampling"}
        assert res[f"energy_{part}_j"] > 0
    assert res["energy_total_j"] == pytest.approx(res["energy_cpu_j"] + res["energy_ram_j"])
    assert so_far["energy_total_j"] == pytest.approx(res["energy_total_j"])
    assert res["warmup_energy_j"] is None  # no warm-up window
    assert res["idle_power_w"] is None and res["energy_above_idle_j"] is None  # no idle baseline
    assert set(res["energy_assumptions"]) == {"cpu", "ram"}
    json.dumps(res, allow_nan=False)  # result.json-safe
    assert res["country_iso_code"] == "USA"
    assert res["carbon_intensity_g_per_kwh"] > 0
    assert res["co2_kg"] == pytest.approx(res["energy_total_j"] / 3.6e6 * res["carbon_intensity_g_per_kwh"] / 1000)
    assert "USA" in res["co2_method"]
    assert meter.finish() == res  # idempotent

    # emissions.csv holds the same windows (not the sleeps between them) and the same intensity.
    row = pd.read_csv(out / "emissions.csv").iloc[-1]
    assert row["energy_consumed"] * 3.6e6 == pytest.approx(res["energy_total_j"], rel=1e-6)
    assert row["emissions"] / row["energy_consumed"] * 1000 == pytest.approx(res["carbon_intensity_g_per_kwh"], rel=1e-6)
    assert row["country_iso_code"] == "USA"


def test_use_codecarbon_false_gives_nulls(in_tmp):
    out = in_tmp / "run"
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=out, country_iso_code="FRA", use_codecarbon=False)
    meter.begin_window()
    meter.end_window()
    res = meter.finish()
    meter.close()
    assert set(res) == RESULT_KEYS
    for part in ("gpu", "cpu", "ram", "total"):
        assert res[f"energy_{part}_j"] is None
    for part in ("gpu", "cpu", "ram"):
        assert res[f"energy_{part}_method"] == "none"
    assert res["co2_kg"] is None and res["carbon_intensity_g_per_kwh"] is None and res["co2_method"] == "none"
    assert res["energy_assumptions"] is None  # nothing estimated
    assert res["warmup_energy_j"] is None and res["idle_power_w"] is None
    assert res["country_iso_code"] == "FRA"
    assert not (out / "emissions.csv").exists()


def test_codecarbon_failure_degrades_to_none(in_tmp, monkeypatch, caplog):
    def broken_stop_task(self, *args, **kwargs):
        raise OSError("simulated codecarbon failure")

    monkeypatch.setattr(codecarbon.OfflineEmissionsTracker, "stop_task", broken_stop_task)
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp / "run", country_iso_code="USA")
    with caplog.at_level(logging.WARNING, logger="harness.measure.energy"):
        meter.begin_window()
        meter.end_window()  # must not raise
        meter.begin_window()
        meter.end_window()
        res = meter.finish()
    meter.close()
    assert "simulated codecarbon failure" in caplog.text
    assert res["energy_cpu_j"] is None and res["energy_cpu_method"] == "none"
    assert res["energy_ram_j"] is None and res["energy_ram_method"] == "none"
    assert res["energy_total_j"] is None and res["co2_kg"] is None and res["co2_method"] == "none"
    assert res["energy_assumptions"] is None


def test_unknown_country_is_a_one_line_user_error(in_tmp):
    from harness.errors import UserError

    with pytest.raises(UserError, match=r"country_iso_code='XYZ'.*valid choices: .*USA") as info:
        EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp, country_iso_code="XYZ", use_codecarbon=False)
    assert "\n" not in str(info.value)


def test_cuda_run_adds_nvml_counter_to_codecarbon(in_tmp, fake_nvml):
    """A CUDA run (NVML faked): GPU from our counter, CPU/RAM from codecarbon, CO2 over the sum."""
    nv = fake_nvml(num_devices=1)
    meter = EnergyMeter(device=torch.device("cuda", 0), output_dir=in_tmp / "run", country_iso_code="USA")
    meter.begin_window()
    nv.energy_mj[0] += 123_456  # 123.456 J
    busy(0.05)
    meter.end_window()
    nv.energy_mj[0] += 1_000_000  # evaluation: excluded
    assert meter.so_far()["energy_gpu_j"] == pytest.approx(123.456)
    res = meter.finish()
    meter.close()
    assert res["energy_gpu_method"] == "nvml_counter"
    assert res["energy_gpu_j"] == pytest.approx(123.456)
    assert res["energy_gpu_j_per_device"] == pytest.approx([123.456])
    assert res["driver_version"] == "555.42.06"
    assert res["energy_total_j"] == pytest.approx(res["energy_gpu_j"] + res["energy_cpu_j"] + res["energy_ram_j"])
    assert res["co2_kg"] == pytest.approx(res["energy_total_j"] / 3.6e6 * res["carbon_intensity_g_per_kwh"] / 1000)
    assert nv.num_shutdown == nv.num_init == 1


def test_cuda_run_without_nvml_and_without_codecarbon_is_all_null(in_tmp, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    meter = EnergyMeter(device=torch.device("cuda"), output_dir=in_tmp, country_iso_code="USA", use_codecarbon=False)
    meter.begin_window()
    meter.end_window()
    res = meter.finish()
    meter.close()
    assert res["energy_gpu_j"] is None and res["energy_gpu_method"] == "none"
    assert res["energy_total_j"] is None


def test_intensity_matches_codecarbon_country_data():
    from codecarbon.input import DataSource

    intensity, how = energy.codecarbon_intensity_g_per_kwh("USA")
    expected = DataSource().get_global_energy_mix_data()["USA"]["carbon_intensity"]
    assert math.isclose(intensity, expected, rel_tol=1e-9)
    assert "offline" in how
    assert "USA" in energy.known_country_iso_codes()


def _bare(cls, **attrs):
    """A codecarbon hardware object without its constructor (which probes the machine)."""
    obj = object.__new__(cls)
    obj.__dict__.update(attrs)
    return obj


def test_codecarbon_method_mapping_from_detected_hardware():
    from codecarbon.external.hardware import CPU, GPU
    from codecarbon.external.ram import RAM

    rapl = energy._codecarbon_methods([_bare(RAM), _bare(CPU, _mode="intel_rapl")])
    assert rapl == {"cpu": "rapl", "ram": "codecarbon_estimate", "gpu": "none"}
    for mode in ("cpu_load", "constant"):
        assert energy._codecarbon_methods([_bare(CPU, _mode=mode)])["cpu"] == "codecarbon_estimate"
    assert energy._codecarbon_methods([_bare(GPU, gpu_ids=[0])])["gpu"] == "codecarbon_estimate"
    assert energy._codecarbon_methods([]) == {"cpu": "none", "ram": "none", "gpu": "none"}


def test_gpu_fallback_to_codecarbon_only_on_an_accelerator_run(in_tmp, monkeypatch):
    """NVML missing: a CUDA run takes codecarbon's GPU figure (e.g. ROCm); a CPU run never does."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(
        energy, "_codecarbon_methods",
        lambda hw: {"cpu": "codecarbon_estimate", "ram": "codecarbon_estimate", "gpu": "codecarbon_estimate"},
    )
    for device, method in ((torch.device("cuda", 0), "codecarbon_estimate"), (torch.device("cpu"), "none")):
        meter = EnergyMeter(device=device, output_dir=in_tmp / device.type, country_iso_code="USA")
        meter.begin_window()
        meter.end_window()
        res = meter.finish()
        meter.close()
        assert res["energy_gpu_method"] == method
        # no GPU here: codecarbon's figure is 0 J, which is recorded as unknown (null), never 0
        assert res["energy_gpu_j"] is None or (method != "none" and res["energy_gpu_j"] > 0)
        assert res["energy_gpu_j_per_device"] is None
        # codecarbon's GPU figure, when used, is an estimate with its own entry; never on a CPU run.
        assert ("gpu" in res["energy_assumptions"]) == (method == "codecarbon_estimate")


def test_close_with_an_open_window_is_safe(in_tmp):
    """The runner's finally: an exception mid-window, then close() (twice). No raise, CSV written."""
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp / "run", country_iso_code="USA")
    meter.begin_window()
    busy(0.02)
    meter.close()
    meter.close()
    assert (in_tmp / "run" / "emissions.csv").is_file()
    with pytest.raises(RuntimeError):
        meter.begin_window()


# ------------------------------------------------------------------ energy_assumptions, warm-up, idle


def torch_work(seconds: float) -> None:
    """CPU work that releases the GIL (torch ops), like a training step."""
    lin = torch.nn.Linear(256, 256)
    x = torch.randn(128, 256)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        lin(x).sum().backward()


def _hw(meter: EnergyMeter, name: str):
    return next(h for h in meter._tracker._hardware if type(h).__name__ == name)


CPU_KEYS = {"method", "model", "codecarbon_mode", "tracking_mode", "load", "tdp_w", "tdp_source", "cpu_model",
            "num_logical_cpus", "num_sockets", "idle_fraction_of_tdp", "load_exponent", "sample_interval_s",
            "mean_power_w", "codecarbon_version", "pue"}
RAM_KEYS = {"method", "model", "tracking_mode", "load", "gb", "gb_basis", "dimms", "watts_per_dimm", "min_watts",
            "watts", "watts_min", "watts_max", "source", "mean_power_w", "codecarbon_version", "pue"}


def _cpu_power_probe(cpu, load_share: float) -> float:
    """codecarbon's own CPU power (W) for a given load share, from a copy of its CPU object."""
    probe = copy.copy(cpu)
    if cpu._tracking_mode == "machine":
        probe._cpu_load_meter = types.SimpleNamespace(percent=lambda: 100.0 * load_share)
    else:  # process: load_share x logical CPUs of CPU time over exactly 1 s of wall time
        now = time.time()
        probe._last_measurement_time = now - 1.0
        probe._last_cpu_times = {1: 0.0}
        probe._get_process_cpu_times = lambda: {1: load_share * cpu._cpu_count}
        real_time = time.time
        try:
            time.time = lambda: now  # the probe's wall clock: exactly 1 s after the last measurement
            return probe._get_power_from_cpu_load().W
        finally:
            time.time = real_time
    return probe._get_power_from_cpu_load().W


@pytest.mark.parametrize("mode", ["process", "machine"])
def test_assumptions_record_what_codecarbon_used(in_tmp, mode):
    """Every constant is named, equals what codecarbon's objects hold, and reproduces its figures."""
    from codecarbon.external.ram import RAM_SLOT_POWER_X86

    meter = EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp / "run", country_iso_code="USA",
                        tracking_mode=mode)
    for _ in range(2):
        meter.begin_window("train")
        torch_work(0.3)
        meter.end_window()
    res = meter.finish()
    meter.close()
    a = res["energy_assumptions"]
    json.dumps(a, allow_nan=False)
    assert set(a) == {"cpu", "ram"}
    cpu, ram = _hw(meter, "CPU"), _hw(meter, "RAM")
    c, r = a["cpu"], a["ram"]
    assert CPU_KEYS <= set(c), CPU_KEYS - set(c)
    assert RAM_KEYS <= set(r), RAM_KEYS - set(r)
    for entry in (c, r):
        assert entry["codecarbon_version"] == codecarbon.__version__ == "3.3.2"
        assert entry["tracking_mode"] == mode and entry["load"].startswith(mode)
        assert entry["pue"] == 1.0
        assert entry["method"] == "codecarbon_estimate"
    assert None not in (c["tdp_w"], c["tdp_source"], c["num_logical_cpus"], c["sample_interval_s"], c["mean_power_w"])

    # CPU: the recorded TDP is codecarbon's, its source reproduces it, and the recorded model gives
    # codecarbon's own power at 0%, 50% and 100% load.
    assert c["tdp_w"] == float(cpu._tdp) and c["codecarbon_mode"] == cpu._mode == "cpu_load"
    assert c["num_logical_cpus"] == cpu._cpu_count and c["cpu_model"] == cpu._model
    assert "unexplained" not in c["tdp_source"]
    for share in (0.0, 0.5, 1.0):
        idle = c["idle_fraction_of_tdp"]
        from_record = c["tdp_w"] * (idle + (1 - idle) * share ** c["load_exponent"])
        assert from_record == pytest.approx(_cpu_power_probe(cpu, share), rel=1e-3), share
    if mode == "process":
        # The process model on our own CPU-time reads agrees with codecarbon's sampled figure.
        assert c["expected_j_from_process_cpu_s"] == pytest.approx(res["energy_cpu_j"], rel=0.25)
    else:
        assert "expected_j_from_process_cpu_s" not in c

    # RAM: per-DIMM watts and the floor are codecarbon's; the DIMM guess and watts are what its RAM
    # object gives for the recorded size; the energy is those watts over the train windows.
    assert r["watts_per_dimm"] == RAM_SLOT_POWER_X86 == 5
    assert r["min_watts"] == 2 * RAM_SLOT_POWER_X86
    assert r["dimms"] == ram._estimate_dimm_count(r["gb"])
    assert r["watts"] == ram._calculate_ram_power(r["gb"]) == energy.ram_model_watts(r["dimms"], 5.0, 10.0)
    assert r["watts_min"] == r["watts_max"] == r["watts"]
    assert res["energy_ram_j"] == pytest.approx(r["watts"] * meter._seconds["train"], rel=0.05)
    if mode == "process":
        assert r["gb"] < 8 and "resident" in r["gb_basis"]  # this test process, not the machine
    else:
        import psutil

        assert r["gb"] == pytest.approx(psutil.virtual_memory().total / 2**30) and "total memory" in r["gb_basis"]


def test_ram_model_restatement_matches_codecarbon():
    """``ram_model_watts`` (what the record's model string says) equals codecarbon's RAM power, x86 and ARM."""
    from codecarbon.external.ram import RAM

    x86, arm = RAM(tracking_mode="machine"), RAM(tracking_mode="machine")
    x86.is_arm_cpu, arm.is_arm_cpu = False, True
    for gb in (0.5, 3, 8, 16, 24, 48, 100, 256, 1024, 4096):
        dimms = x86._estimate_dimm_count(gb)
        assert energy.ram_model_watts(dimms, 5.0, 10.0) == pytest.approx(x86._calculate_ram_power(gb)), gb
        assert energy.ram_model_watts(dimms, energy.CC_RAM_ARM_W_PER_DIMM, energy.CC_RAM_ARM_MIN_W) == pytest.approx(
            arm._calculate_ram_power(gb)), gb


def test_tdp_source_explains_each_codecarbon_origin():
    from codecarbon.core.cpu import DEFAULT_POWER_PER_CORE
    from codecarbon.external.hardware import CPU, POWER_CONSTANT
    from codecarbon.input import DataSource

    def tracker(sockets=1, forced=None):
        return types.SimpleNamespace(_conf={"cpu_physical_count": sockets}, _force_cpu_power=forced)

    row = DataSource().get_cpu_power_data().iloc[0]  # a model codecarbon knows
    known = _bare(CPU, _tdp=float(row["TDP"]) * 2, _model=row["Name"], _cpu_count=16)
    expected = f"cpu_power.csv row {row['Name']!r}: {float(row['TDP']):g} W x 2 socket(s)"
    assert expected in energy.cpu_tdp_source(known, tracker(2))
    unknown = _bare(CPU, _tdp=DEFAULT_POWER_PER_CORE * 2, _model="AMD EPYC", _cpu_count=2)
    assert energy.cpu_tdp_source(unknown, tracker()).startswith(
        f"codecarbon default {DEFAULT_POWER_PER_CORE} W/thread x 2 threads x 1 socket(s)")
    assert "'AMD EPYC' is not in its cpu_power.csv" in energy.cpu_tdp_source(unknown, tracker())
    forced = _bare(CPU, _tdp=120, _model="x", _cpu_count=2)
    assert "force_cpu_power=120 W" in energy.cpu_tdp_source(forced, tracker(forced=120))
    generic = _bare(CPU, _tdp=POWER_CONSTANT, _model="Mystery", _cpu_count=3)
    assert f"generic {POWER_CONSTANT} W" in energy.cpu_tdp_source(generic, tracker())
    # A value none of codecarbon's sources gives is never explained away.
    odd = _bare(CPU, _tdp=7.0, _model="AMD EPYC", _cpu_count=2)
    assert energy.cpu_tdp_source(odd, tracker()).startswith("unexplained")


def test_warmup_windows_are_kept_apart(in_tmp):
    out = in_tmp / "run"
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=out, country_iso_code="USA")
    assert meter.so_far()["energy_total_j"] is None  # before any train window: unknown, not 0
    meter.begin_window("warmup")
    torch_work(0.2)
    meter.end_window()
    assert meter.so_far()["energy_total_j"] is None  # warm-up is never in the training figures
    meter.begin_window("train")
    torch_work(0.2)
    meter.end_window()
    train_so_far = meter.so_far()
    meter.begin_window("warmup")  # a second warm-up window adds to the first
    torch_work(0.1)
    meter.end_window()
    res = meter.finish()
    meter.close()
    assert res["energy_total_j"] == pytest.approx(train_so_far["energy_total_j"])
    assert res["co2_kg"] == pytest.approx(train_so_far["co2_kg"])
    assert res["warmup_energy_j"] > 0
    assert meter.num_windows_by_kind == {"train": 1, "warmup": 2, "idle": 0}
    # emissions.csv is codecarbon's whole record: every window, warm-up included, one task row each.
    row = pd.read_csv(out / "emissions.csv").iloc[-1]
    assert row["energy_consumed"] * 3.6e6 == pytest.approx(res["energy_total_j"] + res["warmup_energy_j"], rel=1e-6)
    tasks = pd.read_csv(next(out.glob("emissions_energy_windows_*.csv")))
    assert sorted(tasks["task_name"]) == ["train_0", "warmup_0", "warmup_1"]


def test_window_misuse_raises(in_tmp):
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp, country_iso_code="USA", use_codecarbon=False)
    with pytest.raises(ValueError, match="valid: train, warmup"):
        meter.begin_window("eval")
    meter.begin_window("warmup")
    assert meter.window_open == "warmup"
    with pytest.raises(RuntimeError, match="'warmup' window is already open"):
        meter.begin_window("train")
    with pytest.raises(RuntimeError):
        meter.measure_idle(0.01)
    meter.end_window()
    with pytest.raises(ValueError):
        meter.measure_idle(0)
    res = meter.finish()
    meter.close()
    assert res["warmup_energy_j"] is None  # no component measured
    with pytest.raises(ValueError, match="tracking_mode"):
        EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp, country_iso_code="USA", use_codecarbon=False,
                    tracking_mode="node")


def test_idle_baseline_on_power_sampling(in_tmp, fake_nvml):
    """GPU at 50 W idle and 150 W training (NVML power sampling, faked): idle 50 W, 100 W above it."""
    nv = fake_nvml(num_devices=1, counter=False)
    nv.power_fn = lambda i, t: 50_000
    meter = EnergyMeter(device=torch.device("cuda", 0), output_dir=in_tmp, country_iso_code="USA",
                        use_codecarbon=False, nvml_sample_interval_s=0.02)
    meter.measure_idle(0.25)
    nv.power_fn = lambda i, t: 150_000
    meter.begin_window("train")
    time.sleep(0.3)
    meter.end_window()
    res = meter.finish()
    meter.close()
    train_s = meter._seconds["train"]
    # The NVML window lies within the meter's window (up to a few ms under load).
    assert res["idle_power_w"] == pytest.approx(50.0, rel=0.05)
    assert meter._idle_power_w() == {"gpu": pytest.approx(50.0, rel=0.05), "cpu": None, "ram": None}
    assert res["energy_gpu_j"] == pytest.approx(150.0 * train_s, rel=0.05)
    assert res["energy_above_idle_j"] == pytest.approx(res["energy_gpu_j"] - res["idle_power_w"] * train_s)
    assert res["energy_above_idle_j"] == pytest.approx(100.0 * train_s, rel=0.08)
    assert res["energy_assumptions"] is None  # the GPU is measured, nothing is estimated


def test_idle_baseline_with_codecarbon_is_labelled_an_estimate(in_tmp):
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp / "run", country_iso_code="USA")
    meter.measure_idle(0.3)
    meter.begin_window("train")
    torch_work(0.3)
    meter.end_window()
    res = meter.finish()
    meter.close()
    by = {part: res["energy_assumptions"][part]["idle_power_w"] for part in ("cpu", "ram")}
    assert meter._idle_power_w() == {"gpu": None, **by}
    assert res["idle_power_w"] == pytest.approx(by["cpu"] + by["ram"])
    train_s = meter._seconds["train"]
    assert res["energy_above_idle_j"] == pytest.approx(res["energy_total_j"] - res["idle_power_w"] * train_s)
    # Process tracking, sleeping: this process's CPU time is ~0, so the model's CPU idle is ~0 W; RAM
    # is the same DIMM guess (its floor for this small process).
    assert by["cpu"] < 0.5
    assert by["ram"] == pytest.approx(res["energy_assumptions"]["ram"]["watts"], rel=0.05)
    for part in ("cpu", "ram"):
        entry = res["energy_assumptions"][part]
        assert entry["idle_window_s"] == pytest.approx(0.3, rel=0.2)
        assert "not a measurement" in entry["idle_note"]
    assert res["energy_total_j"] == pytest.approx(meter.so_far()["energy_total_j"])  # idle is not training


def test_config_tracking_mode_is_typed_and_reaches_the_meter(in_tmp):
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from harness.config import CodecarbonTrackingMode, MeasureConfig

    cfg = OmegaConf.structured(MeasureConfig)
    assert cfg.codecarbon_tracking_mode == "process" and cfg.idle_baseline_s == 0.0
    cfg.codecarbon_tracking_mode = "machine"
    assert cfg.codecarbon_tracking_mode is CodecarbonTrackingMode.machine
    with pytest.raises(ValidationError, match="expected one of"):
        cfg.codecarbon_tracking_mode = "node"
    json.dumps(OmegaConf.to_container(cfg, resolve=True))  # the resolved config stays JSON-safe
    meter = EnergyMeter(device=torch.device("cpu"), output_dir=in_tmp, country_iso_code="USA", use_codecarbon=False,
                        tracking_mode=cfg.codecarbon_tracking_mode)
    assert meter.tracking_mode == "machine"
    meter.close()


def test_a_component_that_reads_zero_is_null_not_zero(fake_nvml, in_tmp, caplog):
    """A window shorter than NVML's counter update (20-100 ms) reads 0 J: unknown, not a plausible 0."""
    fake_nvml(num_devices=1)  # the counter does not move
    meter = EnergyMeter(device=torch.device("cuda", 0), output_dir=in_tmp / "run", country_iso_code="USA",
                        use_codecarbon=False)
    meter.begin_window()
    meter.end_window()
    with caplog.at_level(logging.WARNING):
        res = meter.finish()
    meter.close()
    assert res["energy_gpu_method"] == "nvml_counter"
    assert res["energy_gpu_j"] is None and res["energy_total_j"] is None and res["co2_kg"] is None
    assert res["energy_gpu_j_per_device"] is None
    assert "0 J" in caplog.text
