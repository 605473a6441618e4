"""Several devices in one run: ``torchrun --nproc_per_node=N -m harness ...`` (DDP).

torchrun starts N processes (ranks) and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and the rendezvous address; :func:`from_env` reads them and
:func:`init` joins the process group (``nccl`` on CUDA, ``gloo`` on the CPU). What each part
of the harness does with several ranks:

- **Run folder.** Rank 0's Hydra folder is the run's; the other ranks get a throw-away folder
  from ``__main__`` and learn rank 0's by :meth:`Dist.broadcast_object`. Only rank 0 writes
  ``result.json``, ``curve.csv``, predictions and checkpoints.
- **Training.** The model is wrapped in ``torch.nn.parallel.DistributedDataParallel`` around the
  workload's whole loss (:class:`harness.runner.LossModule`), so workloads whose loss calls
  sub-modules beside ``forward`` (detection's FCOS) are synchronised too. Every rank draws the
  same seeded batch stream and takes every N-th batch from its rank on (a
  ``DistributedSampler``-like shard), so a step trains N different batches; an optimiser step
  is global, ``trainer.batch_size`` is per device and ``trainer.epochs`` counts passes over the
  training set by all ranks together.
- **Agreement.** Stop signals, a non-finite loss and a due checkpoint are agreed by one small
  all-reduce at the loop's check points (:meth:`Dist.agree`), so every rank leaves a window,
  saves or stops at the same step; no per-step host synchronisation is added.
- **Evaluation** runs on rank 0 on the unwrapped model (DDP keeps the ranks' weights and
  buffers equal); the others wait at a barrier, outside their timed windows.
- **Counting.** Samples, steps, FLOPs: summed over ranks (:meth:`Dist.sum`); time is rank 0's
  windows (the ranks step in lock-step); ``num_devices`` = world size, so the hardware burden
  is world size x peak x time (Thompson et al.). GPU energy: every rank's NVML counter,
  summed. CPU and RAM energy: codecarbon on every rank, summed in ``process`` tracking mode
  (each rank's own share), taken once per node in ``machine`` mode (node-wide figures).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from harness.errors import UserError

log = logging.getLogger(__name__)

#: torchrun's variables (torch.distributed.run); all four are set for every worker.
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
#: A collective that waits longer than this fails the run instead of hanging it.
TIMEOUT = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, rank and process count on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def node(self) -> int:
        """Which node this rank is on (torchrun gives every node the same number of ranks)."""
        return self.rank // self.local_world_size

    # ---------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum(self, values: Sequence[Optional[float]]) -> list[Optional[float]]:
        """Element-wise sums over the ranks; an element unknown (None) on any rank stays None."""
        if not self.enabled:
            return list(values)
        gathered = self.gather_objects(list(values))
        return [None if any(g[i] is None for g in gathered) else float(sum(g[i] for g in gathered))
                for i in range(len(values))]

    def agree(self, device: torch.device, *flags: Any) -> tuple[bool, ...]:
        """Each flag true on any rank (a bool, or a 0-dim bool tensor such as the loss check), as one
        all-reduce; with one rank, the flags themselves (one host sync for tensors)."""
        values = torch.stack([f.to(device=device, dtype=torch.float32).reshape(()) if torch.is_tensor(f)
                              else torch.tensor(float(bool(f)), device=device) for f in flags])
        if self.enabled:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())


SINGLE = Dist()


def from_env(environ: Optional[dict[str, str]] = None) -> Dist:
    """The ranks torchrun set up, or :data:`SINGLE` outside torchrun."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        values = {k: int(env[k]) for k in ENV_KEYS}
    except (KeyError, ValueError) as exc:
        raise UserError(f"WORLD_SIZE is set but {', '.join(ENV_KEYS)} are not all integers ({exc}): start "
                        "several processes with torchrun (torchrun --nproc_per_node=N -m harness ...)") from None
    dist = Dist(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
    if not (0 <= dist.rank < dist.world_size and 0 <= dist.local_rank < dist.local_world_size <= dist.world_size):
        raise UserError(f"inconsistent torchrun variables: RANK={dist.rank} WORLD_SIZE={dist.world_size} "
                        f"LOCAL_RANK={dist.local_rank} LOCAL_WORLD_SIZE={dist.local_world_size}")
    return dist


def adopt_slurm_tasks(environ: Optional[dict[str, str]] = None) -> bool:
    """Inside a SLURM job of several tasks started by submitit (a launcher preset with
    ``hydra.launcher.tasks_per_node=N``), export torchrun's variables from SLURM's (rank = task,
    ``MASTER_ADDR`` = the job's first node), as submitit's ``TorchDistributedEnvironment`` does,
    so the job's tasks are one DDP run. True when it did; never under torchrun or outside submitit."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or env.get("SUBMITIT_EXECUTOR") != "slurm" or int(env.get("SLURM_NTASKS", "1") or 1) <= 1:
        return False
    from submitit.helpers import TorchDistributedEnvironment

    # each task sees every GPU of its node; device_for picks the local rank's
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def device_for(dist: Dist, spec: str) -> str:
    """The ``device=`` of this rank: ``cuda``/``auto`` with GPUs -> ``cuda:<local rank>``."""
    if not dist.enabled:
        return spec
    wants_cuda = spec == "cuda" or (spec == "auto" and torch.cuda.is_available())
    if spec.startswith("cuda:"):
        raise UserError(f"device={spec} with torchrun: each rank takes the GPU of its local rank; use device=cuda")
    if wants_cuda:
        if torch.cuda.device_count() == 1 and "SLURM_STEP_ID" in os.environ and os.environ.get("CUDA_VISIBLE_DEVICES"):
            return "cuda:0"  # SLURM bound one GPU to this task (--gpus-per-task=1)
        if torch.cuda.device_count() < dist.local_world_size:
            raise UserError(f"torchrun started {dist.local_world_size} processes on this node but torch sees "
                            f"{torch.cuda.device_count()} CUDA device(s): one GPU per process")
        return f"cuda:{dist.local_rank}"
    return "cpu" if spec == "auto" else spec


def init(dist: Dist, device: torch.device) -> None:
    """Join the process group: ``nccl`` for CUDA devices, ``gloo`` on the CPU."""
    if not dist.enabled or torch.distributed.is_initialized():
        return
    if not torch.distributed.is_available():
        raise UserError("torchrun started several processes but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend, timeout=TIMEOUT,
                                         **({"device_id": device} if device.type == "cuda" else {}))
    log.info("rank %d of %d (local %d of %d) joined the %s process group on %s", dist.rank, dist.world_size,
             dist.local_rank, dist.local_world_size, backend, device)


#: What a rank other than 0 leaves when its run fails: rank 0 writes the result, and without this it
#: sees only the symptom (gloo: "Connection closed by peer"; a collective that never returns).
RANK_FAILURE_NAME = "failure.json"
#: How long rank 0 waits for another rank's failure file once its own run has failed (a shared file
#: system may show a file late; the other rank writes it before its process exits).
RANK_FAILURE_WAIT_S = 5.0


def rank_failure_path(run_dir: Path, rank: int) -> Path:
    return run_dir / "ranks" / str(rank) / RANK_FAILURE_NAME


def clear_rank_failures(run_dir: Path) -> None:
    """Rank 0, before the ranks meet: failure files of an earlier segment of this run folder go."""
    for path in run_dir.glob(f"ranks/*/{RANK_FAILURE_NAME}"):
        path.unlink(missing_ok=True)


def write_rank_failure(run_dir: Path, rank: int, status: str, reason: Optional[str]) -> None:
    from common.atomic import write_json_atomic

    path = rank_failure_path(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"rank": rank, "status": status, "failure_reason": reason,
                             "at": dt.datetime.now(dt.timezone.utc).isoformat()})


def read_rank_failures(run_dir: Path, world_size: int, wait_s: float = RANK_FAILURE_WAIT_S) -> list[dict[str, Any]]:
    """The other ranks' failure files, earliest first; waits up to ``wait_s`` for the first to show."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for rank in range(1, world_size):
            path = rank_failure_path(run_dir, rank)
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        if found or time.monotonic() >= deadline:
            return sorted(found, key=lambda f: (f.get("at") or "", f.get("rank", 0)))
        time.sleep(0.2)


def blame(status: str, reason: Optional[str], others: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0's failed outcome with the other ranks' own: the reason leads with the first rank that
    failed, and a run whose rank 0 only saw the group break takes that rank's status (``oom``)."""
    if not others:
        return {}
    first = others[0]
    told = "; ".join(f"rank {o['rank']} {o['status']}: {o['failure_reason']}" for o in others)
    return {"status": first["status"] if status == "failed" and first["status"] == "oom" else status,
            "failure_reason": f"{told} (rank 0 {status}: {reason})"}


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def combine_energy(dist: Dist, fields: dict[str, Any], tracking_mode: str) -> dict[str, Any]:
    """The run's energy from every rank's meter fields (on every rank): GPU joules summed; CPU and
    RAM joules summed over ranks in ``process`` mode, over one rank per node in ``machine`` mode;
    totals and CO2 re-added. Per-device GPU joules are listed in rank order."""
    if not dist.enabled:
        return {}
    keys = ("energy_gpu_j", "energy_cpu_j", "energy_ram_j", "energy_total_j", "co2_kg", "warmup_energy_j",
            "energy_above_idle_j")
    mine = {k: fields.get(k) for k in keys}
    mine["local_rank"] = dist.local_rank
    every = dist.gather_objects(mine)

    def total(key: str, ranks: list[dict[str, Any]]) -> Optional[float]:
        values = [r[key] for r in ranks]
        return None if any(v is None for v in values) else float(sum(values))

    host_ranks = every if tracking_mode == "process" else [r for r in every if r["local_rank"] == 0]
    out: dict[str, Any] = {
        "energy_gpu_j": total("energy_gpu_j", every),
        "energy_cpu_j": total("energy_cpu_j", host_ranks),
        "energy_ram_j": total("energy_ram_j", host_ranks),
        "energy_gpu_j_per_device": [r["energy_gpu_j"] for r in every] if fields.get("energy_gpu_j") is not None else None,
    }
    parts = [out[k] for k in ("energy_gpu_j", "energy_cpu_j", "energy_ram_j") if out[k] is not None]
    out["energy_total_j"] = float(sum(parts)) if parts else None
    mine_total = fields.get("energy_total_j")
    if fields.get("co2_kg") is not None and mine_total:  # same grid intensity on every rank
        out["co2_kg"] = fields["co2_kg"] * out["energy_total_j"] / mine_total if out["energy_total_j"] else None
    if fields.get("warmup_energy_j") is not None:
        out["warmup_energy_j"] = total("warmup_energy_j", every)
    for key in ("idle_power_w", "energy_above_idle_j"):  # measured per rank; not combined
        out[key] = None
    return out


def energy_method(tracking_mode: str) -> str:
    """How :func:`combine_energy` adds the ranks' energy, for ``distributed_method``."""
    host = ("every rank (codecarbon process mode: each rank's own share)" if tracking_mode == "process"
            else "one rank per node (codecarbon machine mode: node-wide figures)")
    return f"GPU energy summed over every rank's device; CPU and RAM energy summed over {host}"


def merge_flop_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One :class:`harness.measure.batch_flops.BatchFlops` state from every rank's: batches and
    positions summed, forward counts of every shape any rank counted, rank 0's counting time."""
    from collections import Counter

    first = states[0]
    macs: dict[Any, float] = {}
    batches: dict[str, Counter] = {}
    real, padded, unsupported = Counter(), Counter(), Counter()
    for state in states:
        macs.update(state["macs"])
        for window, counts in state["batches"].items():
            batches.setdefault(window, Counter()).update(counts)
        real.update(state["real_positions"])
        padded.update(state["padded_positions"])
    unsupported.update(first["unsupported_ops"])
    failure = next((s["failure"] for s in states if s["failure"] is not None), None)
    return {"macs": macs, "batches": {w: dict(c) for w, c in batches.items()}, "real_positions": dict(real),
            "padded_positions": dict(padded), "unsupported_ops": dict(unsupported),
            "count_time_s": first["count_time_s"], "failure": failure}


def zero_tallies(state: dict[str, Any]) -> dict[str, Any]:
    """A BatchFlops state with the shape counts kept and no batches tallied (a resumed rank > 0)."""
    return dict(state, batches={}, real_positions={}, padded_positions={})


def tracking_mode(cfg: Any) -> str:
    """``measure.codecarbon_tracking_mode`` as its value (``process`` or ``machine``)."""
    mode = cfg.measure.codecarbon_tracking_mode
    return str(getattr(mode, "value", mode))
