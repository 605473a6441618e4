"""``python -m harness`` as a user runs it: bad input, a single run and a two-job sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.train_subset=256", "data.eval_subset=128", "trainer.batch_size=64", "trainer.epochs=1",
    "trainer.num_evals=1", "trainer.timing_warmup_steps=1", "trainer.progress=false",
    "measure.codecarbon=false", "device=cpu",
]


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model=vgg", ["model", "vgg", "resnet"]),  # unknown model: Hydra lists the options
        ("data=mnist", ["data", "mnist", "fashion_mnist"]),  # unknown dataset
        ("scale=0", ["scale=0", "> 0"]),
        ("scale=-0.5", ["scale=-0.5", "> 0"]),
        ("scale=abc", ["scale", "abc"]),  # non-numeric: rejected by the typed config
        ("trainer.epochs=lots", ["epochs", "lots"]),
        ("trainer.lr_max=1", ["lr_max"]),  # a typo: unknown key fails at compose time
        ("device=tpu", ["device", "tpu", "cpu"]),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, fashion_mnist_root, override, expected):
    out = tmp_path / "run"
    proc = harness(*TINY, f"hydra.run.dir={out}", f"data.root={fashion_mnist_root}", override, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for word in expected:
        assert word in proc.stderr, proc.stderr
    assert not (out / "result.json").exists()


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    empty = tmp_path / "nowhere"
    empty.mkdir()
    out = tmp_path / "run"
    proc = harness(f"data.root={empty}", f"hydra.run.dir={out}", *TINY, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(empty) in lines[0] and "apt-get install dataset-fashion-mnist" in lines[0] and "data.root" in lines[0]
    assert not out.exists()


def test_single_run_prints_a_summary_and_writes_its_folder(tmp_path, fashion_mnist_root):
    out = tmp_path / "run"
    proc = harness(f"hydra.run.dir={out}", f"data.root={fashion_mnist_root}", "scale=0.125", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "top1_accuracy" in proc.stdout and "hardware burden" in proc.stdout
    assert {"result.json", "curve.csv", "harness.log", ".hydra"} <= {p.name for p in out.iterdir()}
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["scale"] == 0.125
    # the command's first run: start-up counts from the command's start, imports and config first
    assert result["startup_method"].startswith("command start")
    assert list(result["startup_phases_s"]) == ["imports_config", "setup", "data", "model", "flop_counting",
                                                "meters", "warmup"]
    assert sum(result["startup_phases_s"].values()) == pytest.approx(result["startup_time_s"], abs=1e-6)
    assert "start-up  imports config " in proc.stdout


def test_startup_counts_from_the_command_not_from_a_shell_that_execs_it(tmp_path, fashion_mnist_root):
    """``bash -c 'set-up && python -m harness'`` execs python in the shell's process: its creation time
    (psutil create_time) is before the set-up. Start-up must count from the command, not the set-up."""
    import datetime as dt
    import shlex
    import time

    out = tmp_path / "run"
    cmd = shlex.join([sys.executable, "-m", "harness", f"hydra.run.dir={out}", f"data.root={fashion_mnist_root}",
                      "scale=0.125", *TINY])
    before = time.time()
    proc = subprocess.run(["bash", "-c", f"sleep 3 && exec {cmd}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    command_start = dt.datetime.fromisoformat(result["started_at"]).timestamp() - result["startup_phases_s"]["imports_config"]
    assert command_start >= before + 3 - 0.05  # after the sleep (timestamps to the millisecond or so)
    assert result["startup_phases_s"]["imports_config"] < 60


def test_sweep_of_two_jobs_records_a_failed_job_and_goes_on(tmp_path, fashion_mnist_root):
    sweep = tmp_path / "sweep"
    proc = harness("-m", "scale=0.125,-1", f"hydra.sweep.dir={sweep}", f"data.root={fashion_mnist_root}", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = sorted((json.loads(p.read_text()) for p in sweep.glob("*/result.json")), key=lambda r: r["overrides"][0])
    assert [r["status"] for r in results] == ["failed", "ok"]  # "scale=-1" sorts before "scale=0.125"
    assert "scale=-1" in results[0]["failure_reason"]
    assert results[1]["scale"] == 0.125 and results[1]["metric_value"] is not None


def test_sweep_with_a_static_typo_stops_before_any_job(tmp_path, fashion_mnist_root):
    sweep = tmp_path / "sweep"
    proc = harness("-m", "scale=0.125,abc", f"hydra.sweep.dir={sweep}", f"data.root={fashion_mnist_root}", *TINY, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: scale: Value 'abc' of type 'str' could not be converted to Float"
    assert not sweep.exists()


@pytest.mark.parametrize(
    "command, override, expected",
    [
        ("kernels", "repeats=3", "'repeats' is not a config key; valid keys of the top level: cpu,"),
        ("analysis", "fit.min_points=abc", "fit.min_points: Value 'abc' of type 'str' could not be converted to Integer"),
    ],
)
def test_every_command_reports_bad_overrides_in_one_line(tmp_path, command, override, expected):
    proc = subprocess.run([sys.executable, "-m", command, override, f"out_dir={tmp_path / 'out'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), proc.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ issue 8: nothing silent, nothing written
def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a refused command (exit 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_misspelled_experiment_stops_the_sweep_and_writes_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    proc = harness("-m", "experiment=fmnist_width_swep", "trainer.max_steps=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    line = one_error_line(proc)
    assert line == ("error: experiment='fmnist_width_swep' is unknown; valid choices: cifar10_resnet18, fmnist_width_sweep, "
                    "scaling_detection, scaling_image_classification, scaling_ner, scaling_qa, scaling_translation")
    assert "Launching" not in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no results/ in the working folder


def test_plus_cannot_add_a_key_to_a_typed_config(tmp_path):
    proc = harness("+trainer.lrr=5", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    line = one_error_line(proc)
    assert line.startswith("error: 'trainer.lrr' is not a config key; valid keys of trainer: batch_size,")
    assert "lr," in line and "(a leading + cannot add keys to a typed config)" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["experiment=fmnist_width_swep"], "experiment='fmnist_width_swep' is unknown; valid choices: cifar10_resnet18, fmnist_width_sweep"),
        (["-m", "experiment=fmnist_width_sweep,nope"], "experiment='nope' is unknown"),  # every swept option
        (["+trainer.lrr=5"], "'trainer.lrr' is not a config key"),
        (["++trainer.lrr=5"], "'trainer.lrr' is not a config key"),
        (["+foo=1"], "'foo' is not a config key; valid keys of the top level: data, device,"),
        (["+model.width=2"], "'model.width' is not a config key; valid keys of model: depth, name,"),
        (["+trainer.lr=0.5"], "Could not append to config. An item is already at 'trainer.lr'"),  # Hydra's own, one line
        (["data.root=/tmp/a,b"], "'data.root=/tmp/a,b' has a comma: for a string type it as \"data.root='/tmp/a,b'\""),
        # what stays allowed: ++ on a key the schema has, an existing option, an untyped hydra key
        (["++trainer.lr=0.05"], None),
        (["experiment=fmnist_width_sweep"], None),
        (["-m", "experiment=fmnist_width_sweep,cifar10_resnet18"], None),
        (["+data.root=/x"], None),  # a schema field whose value is null: Hydra sets it
    ],
)
def test_precheck_groups_and_additions(args, expected):
    from common.hydra_cli import precheck
    from harness.config import register_configs

    register_configs()
    problem = precheck(args, "config")
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem


def test_a_preset_without_a_file_for_the_workload_is_one_line(tmp_path):
    """Hydra skips a missing optional specialisation silently; precheck names the missing file."""
    import shutil

    from common.hydra_cli import CONF_DIR, precheck
    from harness.config import register_configs

    register_configs()
    conf = tmp_path / "harness"
    shutil.copytree(CONF_DIR, conf)
    assert precheck(["preset=tiny"], "config", conf) is None
    (conf / "workload_preset" / "image_classification_tiny.yaml").unlink()
    problem = precheck(["preset=tiny"], "config", conf)
    assert problem is not None and problem.startswith(
        "preset=tiny has no file for workload=image_classification (workload_preset/image_classification_tiny.yaml)"), problem


QUOTING = [
    ("data.root=~/data/cifar10", "\"data.root='~/data/cifar10'\"", "~/data/cifar10"),
    ("data.root=/tmp/dätä", "\"data.root='/tmp/dätä'\"", "/tmp/dätä"),
    ("hydra.run.dir=/r/sweep/0_scale=0.125", "\"hydra.run.dir='/r/sweep/0_scale=0.125'\"", "/r/sweep/0_scale=0.125"),
    ("data.root=/tmp/it's (x86)", None, "/tmp/it's (x86)"),
    ("data.root=/tmp/a $b", None, "/tmp/a $b"),
]


@pytest.mark.parametrize("override, suggestion, value", QUOTING)
def test_unparsable_values_say_how_to_quote_and_the_quoting_works(override, suggestion, value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from common.hydra_cli import parse_problem, precheck, shell_quoted

    typed = shell_quoted(override)
    if suggestion is not None:
        assert typed == suggestion
    # what the shell hands over for the suggestion parses, in Hydra, to the value meant
    echoed = subprocess.run(["bash", "-c", f"printf '%s' {typed}"], capture_output=True, text=True, check=True).stdout
    assert OverridesParser.create().parse_override(echoed).value() == value
    if "$" not in override and "(" not in override and "~" not in override:  # those: other tests
        problem = precheck([override], "config")
        assert problem == parse_problem(override, "x") and typed in problem, problem


def test_a_run_dir_with_equals_is_one_line_and_the_quoted_form_works(tmp_path):
    run_dir = tmp_path / "sweep" / "0_scale=0.125"
    line = one_error_line(harness(f"hydra.run.dir={run_dir}", cwd=tmp_path))
    assert line == (f"error: cannot parse override 'hydra.run.dir={run_dir}': Hydra reads ~, =, quotes, brackets and "
                    f"non-ASCII characters in a value only inside quotes; type it as \"hydra.run.dir='{run_dir}'\" "
                    "(Hydra's quotes inside the shell's)")
    proc = harness(f"hydra.run.dir='{run_dir}'", "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"dir: {run_dir}\n" in proc.stdout
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "value, typed, meant",
    [
        ("~/data/cifar10", "data.root=$HOME/data/cifar10", "{home}/data/cifar10"),
        ("~/my data/é", "\"data.root='$HOME/my data/é'\"", "{home}/my data/é"),
    ],
)
def test_tilde_path_says_to_use_home(tmp_path, value, typed, meant):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    line = one_error_line(harness("data=cifar10", f"data.root={value}", cwd=tmp_path))
    assert line == (f"error: cannot parse override 'data.root={value}': Hydra reads ~ only inside quotes and never "
                    f"expands it; type it as {typed} (the shell expands $HOME)")
    assert list(tmp_path.iterdir()) == []
    home = "/home/someone"
    echoed = subprocess.run(["bash", "-c", f"printf '%s' {typed}"], env={**os.environ, "HOME": home},
                            capture_output=True, text=True, check=True).stdout
    assert OverridesParser.create().parse_override(echoed).value() == meant.format(home=home)


@pytest.mark.parametrize("command, own", [("kernels", "python -m kernels"), ("analysis", "python -m analysis"),
                                          ("harness.audit", "python -m harness.audit")])
def test_help_lists_only_the_commands_own_config(tmp_path, command, own):
    proc = subprocess.run([sys.executable, "-m", command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert own in proc.stdout
    for harness_group in ("experiment:", "trainer:", "model:", "Configuration groups"):
        assert harness_group not in proc.stdout


def test_harness_help_lists_its_groups(tmp_path):
    proc = harness("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "experiment: cifar10_resnet18, fmnist_width_sweep" in proc.stdout and "out_dir" not in proc.stdout


def test_each_command_has_its_own_config_folder():
    from common.hydra_cli import CONF_DIR, CONF_ROOT, conf_dir

    assert CONF_ROOT == REPO / "conf" and CONF_DIR == conf_dir("harness")
    assert {p.name for p in CONF_ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"} == {"harness", "kernels", "analysis", "audit"}
    assert (conf_dir("harness") / "config.yaml").is_file()
    assert (conf_dir("kernels") / "kernels.yaml").is_file() and (conf_dir("analysis") / "analysis.yaml").is_file()
    assert (conf_dir("audit") / "audit.yaml").is_file()
    with pytest.raises(ValueError, match="harness, kernels, analysis, audit"):
        conf_dir("report")


def test_cifar10_default_folder_is_git_ignored():
    import shutil

    from hydra import compose, initialize_config_dir

    from common.hydra_cli import CONF_DIR
    from harness.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        root = compose("config", overrides=["data=cifar10"]).data.root
    assert root == "results/cache/data/cifar10"
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("no git checkout to ask")
    for path in (f"{root}/cifar-10-batches-py/data_batch_1", "data/cifar10/cifar-10-batches-py/data_batch_1"):
        check = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert check.returncode == 0, f"{path} is not git-ignored"


# ------------------------------------------------------------ kernels: checked before measuring
def kernels(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kernels", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_kernels_huge_gemm_is_refused_before_measuring(tmp_path):
    out = tmp_path / "hw"
    proc = kernels("device=cpu", "cpu.gemm_shapes=[[1000000,1000000,1000000]]", f"out_dir={out}", cwd=tmp_path)
    line = one_error_line(proc)
    assert line.startswith("error: cpu.gemm_shapes [1000000, 1000000, 1000000] in fp32 (3 matrices x 4 B) needs 11175.9 GiB, "
                           "more than 90% of the "), line
    assert line.endswith("GiB available on cpu; use smaller sizes")
    assert proc.stdout == "" and not out.exists()


def test_kernels_unwritable_out_dir_is_refused_before_measuring(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = kernels("device=cpu", f"out_dir={blocker / 'hw'}", cwd=tmp_path)  # root may write a 555 folder; not under a file
    assert one_error_line(proc) == f"error: out_dir='{blocker / 'hw'}' cannot be written: {blocker} is not a folder; choose another out_dir"
    assert proc.stdout == ""


def test_kernels_memory_check_on_cuda_counts_device_and_host_apart():
    from kernels.config import ConfigError, KernelsConfig, check_memory, memory_needs

    cfg = KernelsConfig()
    cfg.cuda.dtypes = ["bf16"]
    cfg.cuda.gemm_shapes = [[16384, 16384, 16384]]
    cfg.cuda.copy_bytes = 0
    cfg.cuda.host_to_device_bytes = 0
    (what, device_bytes, host_bytes), _conv = memory_needs(cfg, "cuda")
    assert what == "cuda.gemm_shapes [16384, 16384, 16384] in bf16 (3 matrices x 2 B)"
    assert device_bytes == 3 * 16384**2 * 2 and host_bytes == 16384**2 * 4  # fp32 staging of one input
    check_memory(cfg, "cuda", device_free=80 * 2**30, host_available=8 * 2**30)
    with pytest.raises(ConfigError, match=r"needs 1\.5 GiB, more than 90% of the 1\.0 GiB available on cuda"):
        check_memory(cfg, "cuda", device_free=2**30, host_available=8 * 2**30)
    with pytest.raises(ConfigError, match=r"needs 1\.0 GiB, more than 90% of the 0\.5 GiB available on host"):
        check_memory(cfg, "cuda", device_free=80 * 2**30, host_available=2**29)
    check_memory(cfg, "cuda", device_free=None, host_available=None)  # unknown: not refused
    # on the CPU, fp32 operands are drawn in place; bf16 ones are staged in fp32 in the same memory
    cfg.cpu.dtypes, cfg.cpu.gemm_shapes, cfg.cpu.copy_bytes = ["fp32", "bf16"], [[1024, 1024, 1024]], 0
    gemms = [n for n in memory_needs(cfg, "cpu") if "gemm" in n[0]]
    assert [(d, h) for _, d, h in gemms] == [(3 * 2**20 * 4, 0), (3 * 2**20 * 2, 2**20 * 4)]


def test_missing_config_folder_is_one_line(tmp_path):
    from common.hydra_cli import precheck

    assert precheck(["fit.min_points=3"], "analysis", tmp_path) == (
        f"config analysis.yaml not found in {tmp_path}: the configs ship with the package; "
        "reinstall it (pip install .) or run from the checkout")


def test_a_path_split_at_a_space_by_the_shell_says_how_to_quote(tmp_path):
    line = one_error_line(harness("data.root=/tmp/my", "data", "folder", "trainer.lr=0.1", cwd=tmp_path))
    assert line == ("error: cannot parse override 'data': it has no '=', so the value before it ('data.root=/tmp/my') "
                    "was split at a space by the shell; type it as \"data.root='/tmp/my data folder'\" "
                    "(Hydra's quotes inside the shell's)")
    proc = harness("data.root='/tmp/my data folder'", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0 and "root: /tmp/my data folder\n" in proc.stdout, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_kernels_out_dir_expands_a_quoted_tilde():
    from kernels.config import KernelsConfig, validate

    assert validate(KernelsConfig(out_dir="~/hw"), "cpu").out_dir == str(Path.home() / "hw")


def test_run_pipeline_maps_user_errors_and_ctrl_c_to_exit_codes(capsys):
    """analysis and audit share their CLI's error handling: one line and 2, or 130 on Ctrl-C."""
    from common.hydra_cli import run_pipeline

    class Bad(Exception):
        pass

    def fails(exc):
        def run(cfg):
            raise exc
        return run

    assert run_pipeline(lambda cfg: cfg + 1, 1, (Bad,)) == 2
    with pytest.raises(SystemExit) as e:
        run_pipeline(fails(Bad("no such file")), None, (Bad,))
    assert e.value.code == 2 and capsys.readouterr().err == "error: no such file\n"
    with pytest.raises(SystemExit) as e:
        run_pipeline(fails(KeyboardInterrupt()), None, (Bad,))
    assert e.value.code == 130 and "interrupted (Ctrl-C)" in capsys.readouterr().err
    with pytest.raises(ValueError):  # anything else is a bug: its traceback stays
        run_pipeline(fails(ValueError("bug")), None, (Bad,))
