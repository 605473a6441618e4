"""Sweeps that outgrow one machine (issue 14, SLURM half): sweep.csv, re-running a sweep
(skip ok, re-run the rest, force=true), the launcher presets, and a real 2-job sweep through
``sbatch`` on the single-node cluster of ``scripts/slurm-local.sh`` (marked ``slurm``)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import _required
from harness.rundir import job_plan, move_aside
from harness.sweep import SWEEP_FIELDS, SweepCsv, planned_jobs, result_identity, summary_line, sweep_rows, write_sweep_csv

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Seconds-long runs: the tiny preset cut to 2 steps, no warm-up, one evaluation of 100 samples, no codecarbon.
SHORT = ["preset=tiny", "device=cpu", "trainer.max_steps=2", "trainer.timing_warmup_steps=0", "trainer.num_evals=1",
         "data.eval_subset=100", "measure.codecarbon=false"]


# ---------------------------------------------------------------- helpers
def _job(sweep: Path, name: str, overrides: list[str], result: dict | str | None) -> Path:
    """A job folder as Hydra and the harness leave it: .hydra/overrides.yaml and result.json."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if isinstance(result, dict):
        (job / "result.json").write_text(json.dumps(result))
    elif isinstance(result, str):
        (job / "result.json").write_text(result)
    return job


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _harness(cwd: Path, fashion_mnist_root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]  # Hydra wants -m before the overrides
    cmd = [sys.executable, "-m", "harness", *flags, *SHORT, f"data.root={fashion_mnist_root}",
           f"measure.hardware_profiles_dir={cwd / 'hw'}", *(a for a in args if not a.startswith("-"))]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _results(sweep: Path) -> dict[str, dict]:
    """Job folder name -> its result.json."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


# ---------------------------------------------------------------- sweep.csv, unit
def test_sweep_rows_one_per_planned_job_with_missing_failed_and_skipped(tmp_path):
    sweep = tmp_path / "sweep"
    ok = {"run_id": "a", "status": "ok", "metric_name": "top1_accuracy", "metric_value": 0.75, "error": 0.25,
          "failure_reason": None, "train_flops": 1.5e9, "train_time_s": 2.0, "energy_total_j": None, "wall_time_s": 3.0}
    failed = {"run_id": "b", "status": "failed", "metric_name": "top1_accuracy", "metric_value": None, "error": None,
              "failure_reason": "bad input: scale=-1.0 is invalid", "train_flops": None}
    _job(sweep, "0_scale=0.5", ["scale=0.5"], ok)
    _job(sweep, "1_scale=-1", ["scale=-1"], failed)
    _job(sweep, "0_seed=7", ["seed=7"], {"run_id": "c", "status": "ok"})  # an earlier, different sweep
    _job(sweep, "3_scale=4", ["scale=4"], "{trunc")
    planned = [["scale=0.5"], ["scale=-1"], ["scale=2"], ["scale=4"]]
    rows = sweep_rows(sweep, before={"0_scale=0.5": "a", "1_scale=-1": "old"}, planned=planned)
    assert [r["job"] for r in rows] == [0, 1, 2, 3]
    assert [r["status"] for r in rows] == ["ok", "failed", "missing", "unreadable"]
    assert [r["skipped"] for r in rows] == [True, False, False, False]  # only job 0 kept its result.json
    assert [r["overrides"] for r in rows] == ["scale=0.5", "scale=-1", "scale=2", "scale=4"]
    assert rows[0]["run_dir"] == str(sweep / "0_scale=0.5") and rows[2]["run_dir"] is None
    assert (rows[0]["metric_value"], rows[0]["error"], rows[0]["train_flops"], rows[0]["energy_total_j"]) == (0.75, 0.25, 1.5e9, None)
    assert rows[1]["failure_reason"] == "bad input: scale=-1.0 is invalid"
    assert summary_line(rows) == "sweep: 4 jobs, 1 skipped (already ok), 1 failed, 1 missing, 1 unreadable"
    # without the plan (another sweeper): every job folder, by job number
    assert [(r["job"], r["overrides"]) for r in sweep_rows(sweep)] == [
        (0, "scale=0.5"), (0, "seed=7"), (1, "scale=-1"), (3, "scale=4")]

    out = tmp_path / "sweep.csv"
    write_sweep_csv(out, rows)
    table = _read_csv(out)
    assert list(table[0]) == list(SWEEP_FIELDS)
    assert table[0]["metric_value"] == "0.75" and table[0]["energy_total_j"] == "" and table[0]["skipped"] == "True"
    assert table[2]["status"] == "missing" and table[2]["run_dir"] == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sweep.csv")] == []  # no temporary left


def test_planned_jobs_expand_like_hydras_basic_sweeper():
    cfg = OmegaConf.create({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": ["preset=tiny", "seed=0,1", "scale=0.5,1.0"]}}})
    assert planned_jobs(cfg) == [["preset=tiny", "seed=0", "scale=0.5"], ["preset=tiny", "seed=0", "scale=1.0"],
                                 ["preset=tiny", "seed=1", "scale=0.5"], ["preset=tiny", "seed=1", "scale=1.0"]]
    cfg.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert planned_jobs(cfg) is None  # another sweeper: sweep.csv lists the job folders instead


def test_sweep_csv_is_rewritten_after_each_job_so_a_cut_sweep_keeps_one(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0_seed=0", ["seed=0"], {"run_id": "old", "status": "ok"})  # from an earlier run of this sweep
    cfg = OmegaConf.create({"hydra": {
        "sweep": {"dir": str(sweep)},
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": ["seed=0,1,2"]}}})
    callback = SweepCsv()
    callback.on_job_end(cfg, job_return=None)  # a single run (no multirun start): no table
    assert not (sweep / "sweep.csv").exists()
    callback.on_multirun_start(cfg)
    _job(sweep, "1_seed=1", ["seed=1"], {"run_id": "new", "status": "diverged", "failure_reason": "loss is nan"})
    callback.on_job_end(cfg, job_return=None)  # then the sweep is cut: job 2 never runs
    table = _read_csv(sweep / "sweep.csv")
    assert [(r["job"], r["status"], r["skipped"]) for r in table] == [
        ("0", "ok", "True"), ("1", "diverged", "False"), ("2", "missing", "False")]
    assert table[1]["failure_reason"] == "loss is nan"


def test_result_identity_is_the_run_id(tmp_path):
    assert result_identity(tmp_path) is None
    (tmp_path / "result.json").write_text(json.dumps({"run_id": "r1", "status": "ok"}))
    assert result_identity(tmp_path) == "r1"


# ---------------------------------------------------------------- the skip / force rule, unit
def test_job_plan_skips_ok_and_reruns_the_rest(tmp_path):
    assert job_plan(tmp_path, force=False) == ("run", None)
    (tmp_path / "result.json").write_text(json.dumps({"status": "ok"}))
    assert job_plan(tmp_path, force=False) == ("skip", "ok")
    assert job_plan(tmp_path, force=True) == ("rerun", "ok")
    for status in ("failed", "diverged", "oom", "interrupted"):
        (tmp_path / "result.json").write_text(json.dumps({"status": status}))
        assert job_plan(tmp_path, force=False) == ("rerun", status)
    (tmp_path / "result.json").write_text("{trunc")
    assert job_plan(tmp_path, force=False) == ("rerun", "unreadable")


def test_move_aside_keeps_every_attempt(tmp_path):
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    for name, text in (("result.json", '{"status": "failed"}'), ("curve.csv", "c1"), ("predictions.txt", "p1"),
                       ("harness.log", "log1\n"), (".hydra/config.yaml", "cfg")):
        (job / name).write_text(text)
    assert move_aside(job) == job / "previous" / "1"
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "harness.log", "previous"]
    assert sorted(p.name for p in (job / "previous" / "1").iterdir()) == ["curve.csv", "predictions.txt", "result.json"]
    assert (job / "previous" / "1" / "curve.csv").read_text() == "c1"
    (job / "result.json").write_text('{"status": "ok"}')
    assert move_aside(job) == job / "previous" / "2"  # a second re-run: the first attempt stays
    assert (job / "previous" / "1" / "result.json").read_text() == '{"status": "failed"}'
    assert (job / "previous" / "2" / "result.json").read_text() == '{"status": "ok"}'


# ---------------------------------------------------------------- presets compose
@pytest.mark.parametrize("preset, partition, gpus", [("slurm_cpu", "cpu", None), ("slurm_gpu", "gpu", 1), ("local_gpus", "gpu", 1)])
def test_launcher_presets_compose_and_every_value_overrides(preset, partition, gpus):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf" / "harness"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={preset}", "hydra.launcher.timeout_min=7"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_task, launcher.timeout_min) == (partition, gpus, 7)
    assert launcher.max_num_timeout > 0  # requeue through submitit's checkpointing
    assert cfg.hydra.callbacks.sweep_csv._target_ == "harness.sweep.SweepCsv"
    assert "force" in cfg.hydra.job.config.override_dirname.exclude_keys  # force=true keeps the job folders


# ---------------------------------------------------------------- a re-run sweep, local launcher
def test_a_re_run_sweep_skips_ok_jobs_re_runs_failed_ones_and_force_re_runs_all(tmp_path, fashion_mnist_root):
    sweep = tmp_path / "sweep"
    args = ["-m", "measure.count_flops=false", "scale=0.125,-1", f"hydra.sweep.dir={sweep}"]
    first = _harness(tmp_path, fashion_mnist_root, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "sweep: 2 jobs, 0 skipped (already ok), 1 failed, 1 ok" in first.stderr
    table = _read_csv(sweep / "sweep.csv")
    assert [(r["job"], r["status"], r["skipped"]) for r in table] == [("0", "ok", "False"), ("1", "failed", "False")]
    results = _results(sweep)
    ok_dir, bad_dir = (Path(r["run_dir"]) for r in table)
    ok1, bad1 = results[ok_dir.name], results[bad_dir.name]
    assert table[0]["train_flops"] == "" and ok1["train_flops"] is None  # not counted here: null, never 0
    assert table[0]["metric_name"] == "top1_accuracy"
    assert float(table[0]["metric_value"]) == ok1["metric_value"] and float(table[0]["train_time_s"]) == ok1["train_time_s"]
    assert table[1]["failure_reason"] == bad1["failure_reason"] and "scale=-1" in bad1["failure_reason"]

    again = _harness(tmp_path, fashion_mnist_root, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "sweep: 2 jobs, 1 skipped (already ok), 1 failed" in again.stderr
    assert [(r["status"], r["skipped"]) for r in _read_csv(sweep / "sweep.csv")] == [("ok", "True"), ("failed", "False")]
    assert json.loads((ok_dir / "result.json").read_text())["run_id"] == ok1["run_id"]  # untouched
    assert json.loads((bad_dir / "previous" / "1" / "result.json").read_text()) == bad1  # moved aside
    assert json.loads((bad_dir / "result.json").read_text())["status"] == "failed"  # a new attempt, failed again
    assert "skipped" in (ok_dir / "harness.log").read_text() and "re-running" in (bad_dir / "harness.log").read_text()

    forced = _harness(tmp_path, fashion_mnist_root, *args, "force=true")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert "sweep: 2 jobs, 0 skipped (already ok), 1 failed, 1 ok" in forced.stderr
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == sorted(
        [ok_dir.name, bad_dir.name, "multirun.yaml", "sweep.csv"])  # force=true is not in the folder names
    assert json.loads((ok_dir / "previous" / "1" / "result.json").read_text())["run_id"] == ok1["run_id"]
    assert json.loads((ok_dir / "result.json").read_text())["run_id"] != ok1["run_id"]
    assert sorted(p.name for p in (bad_dir / "previous").iterdir()) == ["1", "2"]


# ---------------------------------------------------------------- a real SLURM sweep
def _slurm_cluster() -> str:
    """SLURM_CONF of a cluster that answers, else skip (fail under CI) with the reason."""
    hint = "start one with `eval \"$(scripts/slurm-local.sh start)\"` (.ci/run does)"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        _required("SLURM (sinfo, sbatch)", f"no SLURM client on PATH; {hint}")
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        _required("SLURM cluster", f"SLURM_CONF is unset; {hint}")
    if not Path(conf).is_file():
        _required("SLURM cluster", f"SLURM_CONF={conf} is not a file; {hint}")
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        out = None
    if out is None or out.returncode != 0 or not any(
            line.split()[:1] == ["up"] and line.split()[1].rstrip("*~#") in ("idle", "mix", "alloc")
            for line in out.stdout.splitlines() if len(line.split()) == 2):
        _required("SLURM cluster", f"SLURM_CONF={conf} does not answer with an up, idle node "
                                   f"({(out.stderr or out.stdout).strip()[:200] if out else 'sinfo timed out'}); {hint}")
    return conf


def _slurm_cluster_and_launcher() -> None:
    """A cluster that answers and the submitit launcher plugin, else skip (fail under CI)."""
    _slurm_cluster()
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        _required("hydra-submitit-launcher", "pip install -e '.[test]' (the test extra has it)")


@pytest.mark.slurm
def test_a_two_job_sweep_through_sbatch(tmp_path, fashion_mnist_root):
    _slurm_cluster_and_launcher()
    sweep = tmp_path / "sweep"
    done = _harness(tmp_path, fashion_mnist_root, "-m", "hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1",
                    "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", "seed=0,1", f"hydra.sweep.dir={sweep}",
                    timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --array=0-1" in script  # one sbatch job array
    results = _results(sweep)
    assert len(results) == 2 and {r["status"] for r in results.values()} == {"ok"}
    assert sorted(r["seed"] for r in results.values()) == [0, 1]
    table = _read_csv(sweep / "sweep.csv")
    assert [(r["job"], r["status"], r["skipped"]) for r in table] == [("0", "ok", "False"), ("1", "ok", "False")]
    for row in table:
        result = json.loads((Path(row["run_dir"]) / "result.json").read_text())
        assert row["overrides"] == " ".join(result["overrides"])
        assert float(row["train_flops"]) == result["train_flops"] > 0
        assert float(row["metric_value"]) == result["metric_value"]
    logs = sorted((sweep / ".submitit").glob("*_*/*_0_log.out"))
    assert len(logs) == 2 and all("Starting with JobEnvironment(job_id=" in p.read_text() for p in logs)  # ran as SLURM jobs


@pytest.mark.slurm
def test_a_two_task_slurm_job_is_one_ddp_run(tmp_path, fashion_mnist_root):
    """``hydra.launcher.tasks_per_node=2``: submitit starts 2 tasks of one job, which join one DDP run
    (gloo on the CPU) and write one result with the work of both."""
    _slurm_cluster_and_launcher()
    sweep = tmp_path / "sweep"
    done = _harness(tmp_path, fashion_mnist_root, "-m", "hydra/launcher=slurm_cpu", "hydra.launcher.tasks_per_node=2",
                    "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
                    "seed=3", f"hydra.sweep.dir={sweep}", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script
    results = _results(sweep)
    assert len(results) == 1
    (result,) = results.values()
    assert result["status"] == "ok" and result["num_devices"] == 2 and result["seed"] == 3
    assert result["train_steps"] == 2 and result["train_samples"] == 2 * 2 * result["batch_size"]
    assert [r["status"] for r in _read_csv(sweep / "sweep.csv")] == ["ok"]
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # two tasks ran
