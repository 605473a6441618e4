"""``measure=true``: train each buildable claim's model for a few steps here and project its claimed run.

Per model: the full-size model on the local device, ``warmup_steps`` untimed steps, then
``steps`` steps of ``batch_size`` samples in one ``train`` window of the runner's own meters
(:class:`harness.measure.meter.Meters`: device synchronised at both edges, codecarbon/NVML
energy). The loss is the mean square of the output, so backward runs through every layer; the
step is SGD. Achieved FLOP/s counts 3 x the counted forward per sample (the audit's training
convention); MFU divides by this device's theoretical peak at the run dtype
(:func:`harness.measure.peaks.find_peaks`). The claimed training (claimed compute, else counted)
is projected at that rate: time, energy at the measured mean power, CO2 at the meter's grid
intensity. A model that does not fit in memory is reported as such (``measured_status``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch

from harness.audit.claims import Claim
from harness.audit.counting import build
from harness.measure.host import HostMeter
from harness.measure.meter import Meters

log = logging.getLogger(__name__)

MEASURED_COLUMNS = ("measured_status", "measured_device", "measured_batch_size", "measured_steps",
                    "measured_step_time_s", "measured_flops_per_s", "measured_peak_flops_per_s", "measured_mfu",
                    "measured_power_w", "projected_train_time_s", "projected_energy_j", "projected_co2_kg",
                    "claimed_hardware_flops_per_s", "measured_contended", "measured_other_cpu_share")


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "out of memory" in str(e).lower() or \
        type(e).__name__ == "OutOfMemoryError"


class Measurer:
    def __init__(self, device: torch.device, out_dir: Path, *, steps: int, warmup_steps: int, batch_size: int,
                 country_iso_code: str, use_codecarbon: bool, profiles_dir: str):
        from harness.device import device_info
        from harness.measure.energy import EnergyMeter
        from harness.measure.peaks import find_peaks

        self.device, self.steps, self.warmup_steps, self.batch_size = device, steps, warmup_steps, batch_size
        self.device_name = device_info(device)["device_name"]
        self.energy = EnergyMeter(device=device, output_dir=out_dir, country_iso_code=country_iso_code,
                                  use_codecarbon=use_codecarbon)
        peaks = find_peaks(self.device_name, "fp32", profiles_dir, num_threads=torch.get_num_threads(),
                           device_type=device.type, max_profile_age_h=24.0)
        self.peak = peaks.peak_flops_per_s_run_dtype

    def close(self) -> None:
        self.energy.close()

    def measure(self, claim: Claim, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(MEASURED_COLUMNS)
        fwd = row.get("counted_fwd_flops")
        if fwd is None:
            out["measured_status"] = "not built"
            return out
        batch = claim.batch_size or self.batch_size
        out.update(measured_device=self.device_name, measured_batch_size=batch, measured_steps=self.steps,
                   measured_peak_flops_per_s=self.peak)
        model = None
        try:
            built = build(claim, batch_size=batch)
            model = built.module.to(self.device).train()
            inputs = tuple(x.to(self.device) for x in built.inputs)
            opt = torch.optim.SGD(model.parameters(), lr=1e-6)

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                y = model(*inputs)
                y = y[0] if isinstance(y, (tuple, list)) else y
                y.float().pow(2).mean().backward()
                opt.step()

            for _ in range(self.warmup_steps):
                step()
            # one train window per model; the energy meter is shared (codecarbon starts once)
            meters = Meters(self.device, energy=self.energy, host=HostMeter())
            before = meters.energy_total_j()
            with meters.window("train"):
                for _ in range(self.steps):
                    step()
            seconds = meters.time.seconds["train"]
            after = meters.energy_total_j()
            conditions = meters.host.finish()
            out.update(measured_contended=conditions.get("contended"),
                       measured_other_cpu_share=conditions.get("host_other_cpu_share"))
        except Exception as e:  # noqa: BLE001 - one model's failure must not stop the audit
            if not _out_of_memory(e):
                out["measured_status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                return out
            out["measured_status"] = f"does not fit in memory at batch {batch} on {self.device_name}"
            return out
        finally:
            del model
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        flops_per_s = 3.0 * fwd * batch * self.steps / seconds
        out.update(measured_status="ok", measured_step_time_s=seconds / self.steps, measured_flops_per_s=flops_per_s,
                   measured_mfu=(flops_per_s / self.peak) if self.peak else None)
        energy_j = None if after is None else after - (before or 0.0)
        power = energy_j / seconds if energy_j is not None and seconds > 0 else None
        out["measured_power_w"] = power
        compute = row.get("claimed_train_flops") or row.get("counted_train_flops")
        if compute:
            out["projected_train_time_s"] = compute / flops_per_s
            if power is not None:
                out["projected_energy_j"] = power * out["projected_train_time_s"]
                out["projected_co2_kg"] = self.energy._co2_kg(out["projected_energy_j"])
            hours, chips = claim.train_hours, claim.num_chips
            if hours and chips:
                out["claimed_hardware_flops_per_s"] = compute / (hours * 3600.0 * chips)
        return out


def measure_rows(claims: list[Claim], rows: list[dict[str, Any]], measurer: Optional[Measurer], progress) -> None:
    if measurer is None:
        return
    for claim, row in progress(list(zip(claims, rows)), "measure"):
        row.update(measurer.measure(claim, row))
