"""Nothing lost, nothing silent (issue 8): run folders never collide or get overwritten, bad data is
one line, and a failure before training still writes its result."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.rundir import check_output_dir, finished_status, unwritable_reason
from harness.runner import run

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = ["device=cpu", "scale=0.125", "data.train_subset=256", "data.eval_subset=100", "trainer.batch_size=64",
        "trainer.max_steps=2", "trainer.num_evals=1", "trainer.timing_warmup_steps=1", "trainer.progress=false",
        "measure.codecarbon=false", "measure.count_flops=false"]


def _harness(tmp_path: Path, fashion_mnist_root: Path, *args: str) -> subprocess.Popen:
    flags = [a for a in args if a.startswith("-")]  # Hydra wants -m before the overrides
    cmd = [sys.executable, "-m", "harness", *flags, *FAST, f"data.root={fashion_mnist_root}",
           f"measure.hardware_profiles_dir={tmp_path / 'hw'}", *(a for a in args if not a.startswith("-"))]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- run folders
def test_two_runs_started_together_get_their_own_folders(tmp_path, fashion_mnist_root):
    procs = [_harness(tmp_path, fashion_mnist_root) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    results = sorted((tmp_path / "results" / "runs").glob("*/*/result.json"))
    assert len(results) == 2  # same second, same overrides: two folders, two results
    ids = {json.loads(p.read_text())["run_id"] for p in results}
    assert len(ids) == 2
    for p in results:  # each log holds one run
        assert (p.parent / "harness.log").read_text().count("status ok") == 1


def test_a_finished_run_folder_is_never_overwritten(tmp_path, fashion_mnist_root):
    out = tmp_path / "run"
    first = _harness(tmp_path, fashion_mnist_root, f"hydra.run.dir={out}")
    first.communicate(timeout=180)
    assert first.returncode == 0
    before = (out / "result.json").read_bytes(), (out / "harness.log").read_bytes()
    again = _harness(tmp_path, fashion_mnist_root, f"hydra.run.dir={out}")
    _, stderr = again.communicate(timeout=180)
    assert again.returncode == 2
    assert stderr.strip().count("\n") == 0 and "already holds a finished run" in stderr and "status ok" in stderr
    assert ((out / "result.json").read_bytes(), (out / "harness.log").read_bytes()) == before  # not even the log


def test_a_re_run_sweep_skips_the_jobs_that_finished(tmp_path, fashion_mnist_root):
    sweep = tmp_path / "sweep"
    first = _harness(tmp_path, fashion_mnist_root, "-m", "seed=0,1", f"hydra.sweep.dir={sweep}")
    first.communicate(timeout=300)
    assert first.returncode == 0
    jobs = sorted(sweep.glob("*/result.json"))
    assert len(jobs) == 2
    stamps = [p.read_bytes() for p in jobs]
    # one job's result removed: only that job runs again
    jobs[1].unlink()
    again = _harness(tmp_path, fashion_mnist_root, "-m", "seed=0,1", f"hydra.sweep.dir={sweep}")
    again.communicate(timeout=300)
    assert again.returncode == 0
    assert jobs[0].read_bytes() == stamps[0]
    assert jobs[1].is_file() and json.loads(jobs[1].read_text())["run_id"] != json.loads(stamps[1])["run_id"]
    assert "skipped" in (jobs[0].parent / "harness.log").read_text()


def test_output_folder_checks(tmp_path):
    conf = str(REPO_ROOT / "conf" / "harness")
    done = tmp_path / "done"
    done.mkdir()
    (done / "result.json").write_text(json.dumps({"status": "diverged"}))
    assert finished_status(done) == "diverged" and finished_status(tmp_path) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text("{trunc")
    assert finished_status(tmp_path / "broken") == "unreadable"  # still never overwritten
    assert "status diverged" in check_output_dir([f"hydra.run.dir={done}"], conf, "config")
    assert check_output_dir([f"hydra.run.dir={tmp_path / 'new' / 'run'}"], conf, "config") is None
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "not a folder" in unwritable_reason(blocker / "run")  # root can write anywhere else
    assert "cannot write the run folder" in check_output_dir([f"hydra.run.dir={blocker / 'run'}"], conf, "config")
    assert "cannot write the sweep folder" in check_output_dir(["-m", f"hydra.sweep.dir={blocker / 's'}"], conf, "config")
    assert check_output_dir(["--help"], conf, "config") is None


# ---------------------------------------------------------------- bad data is one line
def _fmnist_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.name.endswith("-ubyte.gz") or p.name.endswith("-ubyte"):
            (dst / p.name).symlink_to(p)
    return dst


def test_truncated_or_corrupt_idx_files_are_one_line_errors(tmp_path, fashion_mnist_root, compose_harness):
    root = _fmnist_copy(fashion_mnist_root, tmp_path / "fm")
    name = "train-images-idx3-ubyte.gz"
    data = gzip.decompress((fashion_mnist_root / name).read_bytes()) if (fashion_mnist_root / name).exists() else None
    if data is None:
        pytest.skip("Fashion-MNIST is not gzipped here")
    (root / name).unlink()
    (root / name).write_bytes(gzip.compress(data)[:5000])  # cut mid-stream
    cfg = compose_harness(tmp_path, f"data.root={root}")
    with pytest.raises(UserError, match=r"corrupt or truncated") as info:
        run(cfg, tmp_path / "out", [])
    assert "\n" not in str(info.value) and name in str(info.value)
    (root / name).write_bytes(gzip.compress(b"\x00\x00"))  # valid gzip, but no IDX header
    with pytest.raises(UserError, match="truncated"):
        run(cfg, tmp_path / "out", [])
    assert not (tmp_path / "out").exists()  # bad input writes nothing


def test_cifar10_download_without_network_is_one_line(tmp_path, compose_harness, monkeypatch):
    import urllib.error

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    cfg = compose_harness(tmp_path, "data=cifar10", f"data.root={tmp_path / 'c10'}", "data.download=true")
    with pytest.raises(UserError, match="could not be downloaded") as info:
        run(cfg, tmp_path / "out", [])
    assert "cifar-10-batches-py" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- failures after validation
def test_a_model_too_large_for_the_host_is_recorded_as_oom(tmp_path, compose_harness):
    cfg = compose_harness(tmp_path, "scale=1e9", "measure.codecarbon=false")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "oom" and "host (CPU) out of memory" in r["failure_reason"]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "oom"


def test_the_log_says_how_a_diverged_run_ended(tmp_path, fashion_mnist_root):
    out = tmp_path / "run"
    proc = _harness(tmp_path, fashion_mnist_root, "trainer.lr=1e30", "trainer.max_steps=30", f"hydra.run.dir={out}")
    proc.communicate(timeout=180)
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "diverged" and proc.returncode == 1
    assert "status diverged" in (out / "harness.log").read_text()
