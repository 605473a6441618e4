"""Checkpoints: a run that is stopped (SLURM's SIGTERM at a time limit, preemption, SIGUSR1) resumes.

``trainer.checkpoint_every_s`` (off by default; on in the SLURM presets) makes the loop save, between
its timed windows and atomically, ``checkpoint.pt`` in the run folder: model, optimiser, scheduler,
gradient scaler, the RNG states, the training progress (steps, samples, the curve so far, which
fixes the data position: the batch stream is a function of the seed, replayed up to ``steps`` on
resume), the FLOP ledger, and the meters' totals so far (time per window kind, energy, CO2, wall
time). A stop signal saves a last one before the run writes ``result.json`` with status
``interrupted``.

The same command (same overrides, same folder) then resumes: the interrupted ``result.json`` moves
to ``segments/<n>/result.json``, training continues from the checkpoint, and the final result
holds samples, steps, FLOPs and metric as an uninterrupted run would, with time and energy summed
over the segments and ``num_segments``. Everything is plain tensors and containers, so it loads
with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1
#: result.json fields that add up over segments (time and energy of each segment's windows).
SUMMED_FIELDS = ("train_time_s", "eval_time_s", "warmup_time_s", "energy_gpu_j", "energy_cpu_j", "energy_ram_j",
                 "energy_total_j", "warmup_energy_j", "co2_kg", "wall_time_s")
#: Config keys that may differ between segments (where and how it is measured, not what is trained).
VOLATILE_KEYS = ("run_name", "force", "trainer.progress", "trainer.checkpoint_every_s")


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_NAME


def config_fingerprint(config: dict[str, Any]) -> str:
    """What must match for a checkpoint to be resumed: the resolved config minus :data:`VOLATILE_KEYS`."""
    cfg = json.loads(json.dumps(config, default=str))
    for key in VOLATILE_KEYS:
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return json.dumps(cfg, sort_keys=True)


def rng_states(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None:
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    random.setstate(_tuples(states["python"]))


def _tuples(value: Any) -> Any:
    """random.setstate needs tuples where a round trip may give lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``checkpoint.pt`` atomically (a temporary file, fsync, then rename)."""
    path = checkpoint_path(run_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(run_dir: Path) -> Optional[dict[str, Any]]:
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format_version") != FORMAT_VERSION:
        from harness.errors import UserError

        raise UserError(f"{path}: checkpoint format {ckpt.get('format_version')}, this version reads {FORMAT_VERSION}")
    return ckpt


def resumable(run_dir: Path) -> bool:
    """A run that left a checkpoint and did not finish (interrupted, or stopped before writing its
    result): the same command resumes it."""
    from harness.rundir import finished_status

    return checkpoint_path(run_dir).is_file() and finished_status(run_dir) in (None, "interrupted")


def set_segment_aside(run_dir: Path) -> Path:
    """Move the interrupted segment's ``result.json`` (and curve) to ``segments/<n>/``; returns it."""
    run_dir = Path(run_dir)
    root = run_dir / "segments"
    if not (run_dir / "result.json").exists():
        return root  # stopped before writing a result: nothing to move
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    target = root / str(max(taken, default=0) + 1)
    target.mkdir(parents=True)
    for name in ("curve.csv", "result.json"):  # result.json last: until it moves the folder reads as interrupted
        if (run_dir / name).exists():
            (run_dir / name).rename(target / name)
    return target


def add_previous(result: dict[str, Any], previous: dict[str, Any]) -> None:
    """Sum the previous segments' time and energy into ``result`` (null stays null: unknown)."""
    for key in SUMMED_FIELDS:
        if key not in previous:
            continue
        before, now = previous[key], result.get(key)
        result[key] = None if (now is None or before is None) else now + before  # one unknown part: unknown
