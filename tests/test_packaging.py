"""``pip install .`` ships the configs: the wheel, installed into a fresh venv, runs all three
commands from a folder outside the checkout (issue 8: they failed with ``Primary config
directory not found``).

The fresh venv reuses this interpreter's installed dependencies through a ``.pth`` file naming
their site-packages folder. A folder named by a ``.pth`` line is put on ``sys.path`` but its own
``.pth`` files are not run, so the project's editable-install hook (``__editable__...pth``) never
loads there: the checkout cannot be imported, and every module and config comes from the wheel.
Offline: the wheel is built with ``--no-build-isolation --no-index`` from a copy of the sources.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What the wheel is built from (pyproject's packages.find include list, and its readme).
SOURCES = ("harness", "models", "kernels", "analysis", "common", "conf", "pyproject.toml", "README.md")
MODULES = ("harness", "models", "kernels", "analysis", "common")


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _clean_env() -> dict:
    """No variable that would put the checkout (or a stray config) in the child's way."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "HYDRA_FULL_ERROR")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _setuptools_builds_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built offline from a copy of the sources (the checkout gets no build/)."""
    if not _setuptools_builds_wheels():
        pytest.fail("setuptools>=70.1 (in the test extra) builds the wheel offline: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = root / "dist"
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                 "--quiet", "--wheel-dir", str(out), str(src)], cwd=root, env=_clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("computelimits-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> tuple[Path, Path]:
    """``(python, site_packages)`` of a fresh venv with the wheel installed and this interpreter's
    dependencies visible through a ``.pth`` (their editable hook is not run)."""
    root = tmp_path_factory.mktemp("venv")
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], cwd=root)
    assert proc.returncode == 0, proc.stderr
    python = root / "venv" / "bin" / "python"
    proc = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root, env=_clean_env())
    site = Path(proc.stdout.strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_computelimits_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    proc = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                 "--quiet", str(wheel)], cwd=root, env=_clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python, site


def test_wheel_holds_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(REPO).as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert {"conf/harness/config.yaml", "conf/kernels/kernels.yaml", "conf/analysis/analysis.yaml"} <= configs


def test_installed_commands_run_from_another_folder(venv, tmp_path, fashion_mnist_root):
    python, site = venv
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env()

    # every module and the config folder come from the install, none from the checkout
    probe = ("import json, importlib, sys; from common.hydra_cli import CONF_ROOT; "
             "where = {m: importlib.import_module(m).__file__ for m in sys.argv[1:]}; "
             "print(json.dumps({**where, 'conf': str(CONF_ROOT)}))")
    proc = _run([str(python), "-c", probe, *MODULES], cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    for name, path in json.loads(proc.stdout).items():
        assert Path(path).is_relative_to(site), (name, path)
    proc = _run([str(python), "-c", "import importlib.util as u; print(u.find_spec('tests'))"], cwd=elsewhere, env=env)
    assert proc.stdout.strip() == "None"  # the checkout is not on the path at all

    # harness: a two-step run, its configs read from the installed conf/harness
    run_dir = tmp_path / "run"
    proc = _run([str(python), "-m", "harness", f"hydra.run.dir={run_dir}", f"data.root={fashion_mnist_root}",
                 "scale=0.0625", "data.train_subset=256", "data.eval_subset=128", "trainer.batch_size=64",
                 "trainer.max_steps=2", "trainer.num_evals=1", "trainer.timing_warmup_steps=1",
                 "trainer.progress=false", "measure.codecarbon=false", "measure.count_flops=false",
                 f"measure.hardware_profiles_dir={tmp_path / 'hw'}", "device=cpu"], cwd=elsewhere, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"
    hydra_yaml = (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert f"path: {site / 'conf' / 'harness'}\n      schema: file\n      provider: main" in hydra_yaml
    # ... and its override pre-check reads the same folder
    proc = _run([str(python), "-m", "harness", "experiment=nope"], cwd=elsewhere, env=env)
    assert proc.returncode == 2 and "valid choices: cifar10_resnet18, fmnist_width_sweep" in proc.stderr, proc.stderr

    # kernels and analysis: their own configs, composed from the install
    proc = _run([str(python), "-m", "kernels", "--help"], cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "python -m kernels" in proc.stdout and "gemm_shapes:" in proc.stdout and "experiment:" not in proc.stdout
    proc = _run([str(python), "-m", "analysis", "--cfg", "job"], cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "literature:" in proc.stdout and "fit:" in proc.stdout
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing written where they ran
