"""Hostile input for the analysis (issue 8): a folder of broken, absurd, copied and symlinked
result.json files beside good runs. Nothing may crash with a traceback, every bad file must be
named, copies must not change a fit, and bad config numbers or an unwritable out_dir must fail in
one line before any work.

The hostile tree is generated in tmp_path; good runs are built like the other analysis tests
(result.json + curve.csv, :func:`test_analysis_measured.write_run`). Fits are compared through
the same functions the pipeline writes fits.csv with, without the literature or figures; the
real CLI runs in a subprocess for the end-to-end checks.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.config import validate
from analysis.constants import COMPUTE_MEASURES
from analysis.errors import AnalysisError
from analysis.fits import fit_measured, fits_table
from analysis.measured import fittable, load_curves, read_result, scan_runs
from analysis.pipeline import check_out_dir
from analysis.points import build_groups
from test_analysis_measured import _compose, write_run

REPO = Path(__file__).resolve().parents[1]

# Good runs: imagenet at four scales, each with a curve.
GOOD = [("good_s1", 1, 0.40), ("good_s2", 2, 0.31), ("good_s4", 4, 0.25), ("good_s8", 8, 0.21)]


def _good_run(root: Path, name: str, scale: float, error: float, **extra) -> Path:
    f = 1e12 * scale
    return write_run(root, name, scale=scale, error=error, train_flops=f, burden=10 * f,
                     energy_j=1e-10 * f, curve=[(f / 2, 5 * f, min(0.9, 1.4 * error)), (f, 10 * f, error)],
                     **extra)


def good_tree(root: Path, outside: Path) -> None:
    """Four good runs under root, plus a fifth in ``outside`` reached through a symlinked folder."""
    for name, scale, err in GOOD:
        _good_run(root, name, scale, err)
    _good_run(outside, "external_s16", 16, 0.18)
    os.symlink(outside, root / "linked_folder", target_is_directory=True)


def _bad_json(root: Path, name: str, text: str | bytes) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    p = folder / "result.json"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def _edit(p: Path, **fields) -> Path:
    """Replace ``fields`` in the result.json ``p`` (json.dumps writes NaN and Infinity as the
    bare tokens Python's json reads back)."""
    data = json.loads(p.read_text())
    data.update(fields)
    p.write_text(json.dumps(data))
    return p


def _edited(root: Path, name: str, **fields) -> Path:
    """A good run (scale 3) whose result.json has ``fields`` replaced."""
    return _edit(_good_run(root, name, 3, 0.3) / "result.json", **fields)


def hostile_tree(root: Path, outside: Path) -> dict[str, str]:
    """The good tree plus every kind of bad file, copy and link. Returns {bad path: key or
    phrase its message must hold}; copies and links are checked separately."""
    good_tree(root, outside)
    text = (root / "good_s1" / "result.json").read_text()
    bad: dict[str, str] = {}

    def add(p: Path, fragment: str) -> None:
        bad[str(p)] = fragment

    add(_bad_json(root, "bad_truncated", text[: len(text) // 2]), "not valid JSON")
    add(_bad_json(root, "bad_binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256))), "not UTF-8")
    add(_bad_json(root, "bad_empty", ""), "empty file")
    add(_bad_json(root, "bad_list", "[1, 2]"), "expected one JSON object")
    add(_bad_json(root, "bad_deep", "[" * 100_000 + "]" * 100_000), "nested too deeply")
    add(_bad_json(root, "bad_bigint", text.replace('"train_flops": 1000000000000.0',
                                                   '"train_flops": 1' + "0" * 400)), "'train_flops'")
    add(_edited(root, "bad_nan", train_flops=float("nan")), "'train_flops'")
    add(_edited(root, "bad_inf", fwd_flops_per_sample=float("inf")), "'fwd_flops_per_sample'")
    add(_edited(root, "bad_inf_nested", config={"trainer": {"lr": float("-inf")}}),
        "'config.trainer.lr'")
    add(_edited(root, "bad_negative", train_flops=-1e12), "'train_flops'")
    add(_edited(root, "bad_zero_time", train_time_s=0.0), "'train_time_s'")
    add(_edited(root, "bad_huge", train_flops=1e300), "'train_flops'")
    add(_edited(root, "bad_tiny_error", error=1e-300), "'error'")
    add(_edited(root, "bad_error_below_one_sample", error=1e-5, eval_samples=50000), "1/eval_samples")
    add(_edited(root, "bad_peak", peak_flops_per_s=1e30), "'peak_flops_per_s'")
    missing = _good_run(root, "bad_missing_key", 3, 0.3) / "result.json"
    data = json.loads(missing.read_text())
    del data["error"]
    missing.write_text(json.dumps(data))
    add(missing, "missing key 'error'")
    (root / "bad_broken_link").mkdir()
    os.symlink(root / "no-such-run" / "result.json", root / "bad_broken_link" / "result.json")
    add(root / "bad_broken_link" / "result.json", "broken symlink")
    (root / "bad_fifo").mkdir()
    os.mkfifo(root / "bad_fifo" / "result.json")  # reading it would block forever
    add(root / "bad_fifo" / "result.json", "not a regular file")
    # a good result.json beside a bad curve.csv ("inf" is a number to pandas)
    curve_run = _good_run(root, "bad_curve_inf", 3, 0.3)
    curve = curve_run / "curve.csv"
    curve.write_text(curve.read_text().replace(",0.3,timed", ",inf,timed"))
    add(curve, "'error'")

    # copies and links of good runs: counted once, and never a change in any fit
    shutil.copytree(root / "good_s1", root / "zz_copy_of_s1")           # a full copy
    (root / "aa_copy_of_s2").mkdir()                                     # sorts first, no curve
    shutil.copy(root / "good_s2" / "result.json", root / "aa_copy_of_s2" / "result.json")
    (root / "file_link").mkdir()
    os.symlink(root / "good_s4" / "result.json", root / "file_link" / "result.json")
    os.symlink(root, root / "loop", target_is_directory=True)           # a cycle
    os.symlink(root / "good_s8", root / "second_link_to_s8", target_is_directory=True)
    return bad


def measured_fits(root: Path, strict: bool) -> pd.DataFrame:
    """fits.csv's measured rows, as the pipeline builds them (no literature, no figures)."""
    scan = scan_runs(str(root), strict)
    runs = fittable(scan.runs)
    curves, counts = load_curves(runs, strict, scan.bad_curves)
    groups, _ = build_groups(runs, curves, counts, False, 3)
    fits = fit_measured(groups, COMPUTE_MEASURES, q=0.1, min_points=3, resamples=30,
                        ci_level=0.95, seed=0)
    return fits_table(fits)


# --- the fuzz-style check (issue 8, done-when) --------------------------------------------------

def test_hostile_folder_every_bad_file_named_and_fits_unchanged(tmp_path):
    clean, clean_out = tmp_path / "clean", tmp_path / "clean_outside"
    good_tree(clean, clean_out)
    hostile, hostile_out = tmp_path / "hostile", tmp_path / "hostile_outside"
    bad = hostile_tree(hostile, hostile_out)

    scan = scan_runs(str(hostile), strict=False)
    runs = fittable(scan.runs)
    load_curves(runs, False, scan.bad_curves)
    named = scan.skipped + scan.bad_curves
    # every bad file named exactly once, with the key or reason, on one line
    for path, fragment in bad.items():
        hits = [m for m in named if m.startswith(path + ":")]
        assert len(hits) == 1, (path, named)
        assert fragment in hits[0] and "\n" not in hits[0], hits[0]
    assert len(named) == len(bad)
    # the good runs, once each: the external one through the symlinked folder, the copies not
    assert sorted(scan.runs["run_id"]) == sorted(
        [n for n, _, _ in GOOD] + ["external_s16", "bad_curve_inf"])
    kept = dict(zip(scan.runs["run_id"], scan.runs["path"]))
    assert kept["good_s1"] == str(hostile / "good_s1" / "result.json")  # first by path of two
    assert kept["good_s2"] == str(hostile / "good_s2" / "result.json")  # the copy has no curve
    assert kept["external_s16"] == str(hostile / "linked_folder" / "external_s16" / "result.json")
    dup = " ".join(scan.duplicates)
    assert "zz_copy_of_s1" in dup and "aa_copy_of_s2" in dup and len(scan.duplicates) == 2
    not_read = " ".join(scan.not_read)
    assert str(hostile / "loop") in not_read and "second_link_to_s8" in not_read
    assert str(hostile / "file_link" / "result.json") in not_read

    # no fit changed: the hostile tree fits exactly like the clean one, bad curve run aside
    shutil.rmtree(hostile / "bad_curve_inf")
    for p in bad:
        if "bad_curve_inf" not in p:
            Path(p).unlink()
    pd.testing.assert_frame_equal(measured_fits(clean, True), measured_fits(hostile, True))


def test_copies_of_runs_do_not_change_fits_csv(tmp_path):
    """fits.csv with and without copies of runs (same run_id) is the same, with one warning
    naming the files of each copied run."""
    clean = tmp_path / "clean"
    good_tree(clean, tmp_path / "outside")
    before = measured_fits(clean, True)
    for name, _, _ in GOOD:
        shutil.copytree(clean / name, clean / "copies" / name)
        shutil.copytree(clean / name, clean / f"{name}_again")
    scan = scan_runs(str(clean), strict=True)
    assert len(scan.runs) == len(GOOD) + 1 and scan.num_copies == 2 * len(GOOD)
    assert len(scan.duplicates) == len(GOOD)
    line = next(d for d in scan.duplicates if "'good_s1'" in d)
    assert line.count("result.json") == 3 and "kept " + str(clean / "copies" / "good_s1") in line
    after = measured_fits(clean, True)
    pd.testing.assert_frame_equal(before, after)
    assert (after[after["model_form"] == "polynomial"]["num_runs"] <= len(GOOD) + 1).all()


def test_copies_that_differ_stop_strict_and_are_named_otherwise(tmp_path):
    _good_run(tmp_path, "a", 1, 0.4)
    _good_run(tmp_path, "b", 2, 0.3, run_id="a")  # another run under the same run_id
    with pytest.raises(AnalysisError) as e:
        scan_runs(str(tmp_path), strict=True)
    msg = str(e.value)
    assert "run_id 'a'" in msg and "differ" in msg and "'error'" in msg and "\n" not in msg
    scan = scan_runs(str(tmp_path), strict=False)
    assert len(scan.runs) == 1 and "contents differ in key 'error'" in scan.duplicates[0]


def test_strict_stops_at_the_first_bad_file_by_path(tmp_path):
    bad = hostile_tree(tmp_path / "r", tmp_path / "outside")
    with pytest.raises(AnalysisError) as e:
        scan_runs(str(tmp_path / "r"), strict=True)
    first = min(p for p in bad if p.endswith("result.json"))
    msg = str(e.value)
    assert msg.startswith(first + ":") and "strict=false" in msg and "\n" not in msg


@pytest.mark.parametrize("fields,fragment", [
    ({"train_flops": 1e29}, "beyond any training run on record"),
    ({"fwd_flops_per_sample": 0.5}, "must be >= 1"),
    ({"hardware_burden_flops": 0}, "'hardware_burden_flops' is 0"),
    ({"energy_total_j": -5.0}, "'energy_total_j'"),
    ({"train_time_s": 1e9}, "'train_time_s'"),
    ({"error": 5e-7, "eval_samples": None}, "below 1e-06"),
    ({"error": 1e-5, "eval_samples": 50000}, "1/eval_samples = 2e-05"),
    ({"num_devices": 0}, "'num_devices'"),
    ({"train_flops": "1e12"}, "expected a number or null"),
])
def test_implausible_values_name_file_and_key(tmp_path, fields, fragment):
    p = _edited(tmp_path, "r", **fields)
    with pytest.raises(AnalysisError) as e:
        read_result(p)
    assert str(e.value).startswith(str(p) + ": key") and fragment in str(e.value)


def test_plausible_edges_are_accepted(tmp_path):
    """The bounds do not reject real runs: the smallest error one sample allows, 1 FLOP, a
    failed run with odd numbers (it is not fitted), and error exactly 1/eval_samples."""
    r = read_result(_edited(tmp_path, "a", error=1 / 50000, eval_samples=50000))
    assert r["error"] == pytest.approx(2e-5)
    read_result(_edited(tmp_path, "b", fwd_flops_per_sample=1.0, co2_kg=0.0))
    read_result(_edited(tmp_path, "c", status="failed", train_flops=-1.0, error=None))
    # SQuAD's error floor is not 1/eval_samples (eval_samples may count context windows)
    read_result(_edited(tmp_path, "d", benchmark="squad1.1", error=2e-5, eval_samples=300))


def test_ok_run_without_flops_is_not_reported_as_fitted(tmp_path):
    for name, scale, err in GOOD:
        _good_run(tmp_path, name, scale, err)
    _edit(_good_run(tmp_path, "no_flops", 16, 0.18) / "result.json", train_flops=None,
          fwd_flops_per_sample=None, hardware_burden_flops=None)
    _edit(_good_run(tmp_path, "no_train_flops", 3, 0.28) / "result.json", train_flops=None)
    _good_run(tmp_path, "busy", 5, 0.24, contended=True)
    runs = fittable(scan_runs(str(tmp_path)).runs)
    curves, counts = load_curves(runs)
    (g,), _ = build_groups(runs, curves, counts, False, 3)
    assert g.accounting("final", "forward_pass") == "6 runs; 1 without fwd_flops_per_sample"
    assert g.accounting("final", "network_operations") == "5 runs; 2 without train_flops"
    assert g.accounting("final", "hardware_burden") == (
        "5 runs; 1 contended, 1 without hardware_burden_flops")
    fits = fits_table(fit_measured([g], COMPUTE_MEASURES, 0.1, 3, 0, 0.95, 0))
    no = fits[(fits["compute_measure"] == "network_operations") & (fits["points"] == "final")]
    assert (no["num_runs"] == 5).all() and (no["runs_left_out"] == "2 without train_flops").all()

    from analysis.report import runs_sentence

    text = runs_sentence(scan_runs(str(tmp_path)).runs, [g])
    assert "7 with status ok and an error, 6 of them entered at least one fit" in text
    assert "1 without any compute" in text


# --- symlinks -------------------------------------------------------------------------------------

def test_symlinked_folder_is_followed_and_a_loop_is_named_once(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _good_run(root, "a", 1, 0.4)
    _good_run(outside, "b", 2, 0.3)
    os.symlink(outside, root / "link", target_is_directory=True)
    os.symlink(outside, outside / "back", target_is_directory=True)  # a loop inside the target
    os.symlink(tmp_path / "gone", root / "dangling", target_is_directory=True)
    scan = scan_runs(str(root))
    assert sorted(scan.runs["run_id"]) == ["a", "b"]
    assert any(str(root / "link" / "back") in x and "not scanned again" in x for x in scan.not_read)
    assert any(str(root / "dangling") in x and "broken symlink" in x for x in scan.not_read)
    # the linked run's curve.csv is found through the link
    curves, counts = load_curves(fittable(scan.runs))
    assert counts["no_curve"] == 0 and len(curves) == 4


def test_symlinked_result_file_reads_the_curve_beside_its_target(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _good_run(outside, "b", 2, 0.3)
    (root / "b").mkdir(parents=True)
    os.symlink(outside / "b" / "result.json", root / "b" / "result.json")
    runs = fittable(scan_runs(str(root)).runs)
    assert runs.iloc[0]["path"] == str(root / "b" / "result.json")
    curves, counts = load_curves(runs)
    assert counts["no_curve"] == 0 and len(curves) == 2


# --- config and out_dir, checked before any work ------------------------------------------------

@pytest.mark.parametrize("override,fragment", [
    ("figures.dpi=-1", "figures.dpi=-1"),
    ("figures.dpi=0", "figures.dpi=0"),
    ("figures.dpi=100000", "figures.dpi=100000"),
    ("fit.bootstrap_resamples=-1", "fit.bootstrap_resamples=-1"),
    ("fit.bootstrap_resamples=10000000", "fit.bootstrap_resamples=10000000"),
    ("fit.bootstrap_seed=-3", "fit.bootstrap_seed=-3"),
    ("fit.quantile=1.5", "fit.quantile=1.5"),
    ("fit.ci_level=nan", "fit.ci_level=nan"),
    ("fit.min_points=1", "fit.min_points=1"),
    ("extrapolation.carbon_intensity_g_per_kwh=nan", "carbon_intensity_g_per_kwh=nan"),
    ("extrapolation.price_usd_per_kwh=inf", "price_usd_per_kwh=inf"),
    ("+within_family.families.Empty=[]", "within_family.families.Empty"),
    ("out_dir=''", "out_dir is empty"),
])
def test_bad_config_numbers_fail_in_one_line(override, fragment):
    cfg = _compose(["within_family.enabled=false", override])
    with pytest.raises(AnalysisError) as e:
        validate(cfg)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_strict_is_a_typed_option_defaulting_to_true():
    from hydra.errors import ConfigCompositionException

    assert _compose([]).strict is True
    assert _compose(["strict=false"]).strict is False
    with pytest.raises(ConfigCompositionException):
        _compose(["strict=maybe"])


def test_unwritable_out_dir_is_refused_before_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(AnalysisError, match="is not a folder"):
        check_out_dir(str(tmp_path / "a_file" / "out"))
    check_out_dir(str(tmp_path / "new" / "deeper"))  # a folder to be made under a writable one
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == ["a_file"]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode bits: the folder really is writable
            check_out_dir(str(ro / "out"))  # (the read-only case for root: /sys, below)
        else:
            with pytest.raises(AnalysisError, match="is not writable"):
                check_out_dir(str(ro / "out"))
    finally:
        ro.chmod(0o700)


def test_read_only_file_system_out_dir_is_refused():
    """/sys is mounted read-only for everyone, root included (where it exists)."""
    if not Path("/sys").is_dir() or _writable("/sys"):
        pytest.skip("no read-only /sys here")
    with pytest.raises(AnalysisError) as e:
        check_out_dir("/sys/computelimits-analysis")
    assert "/sys is not writable" in str(e.value)


def _writable(folder: str) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


# --- the real CLI -----------------------------------------------------------------------------------

def _cli(tmp_path: Path, *overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "analysis", *overrides], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_cli_on_the_hostile_folder(shared_data, tmp_path):
    """strict=true: exit 2, one line naming the first bad file, nothing written. strict=false:
    every bad file named, the good runs fitted, a count in the summary; never a traceback."""
    root = tmp_path / "runs"
    bad = hostile_tree(root, tmp_path / "outside")
    out = tmp_path / "out"
    common = [f"literature.root={shared_data / 'literature'}", f"results.root={root}",
              f"out_dir={out}", f"cache_dir={tmp_path / 'cache'}", "within_family.enabled=false",
              "literature.epoch=false", "fit.bootstrap_resamples=20", "figures.formats=[png]",
              "figures.dpi=50"]
    strict = _cli(tmp_path, *common)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    lines = [ln for ln in strict.stderr.splitlines() if ln.strip()]
    first = min(p for p in bad if p.endswith("result.json"))
    assert len(lines) == 1 and lines[0].startswith(f"error: {first}:"), strict.stderr
    assert not out.exists()

    loose = _cli(tmp_path, *common, "strict=false")
    assert loose.returncode == 0, loose.stderr
    assert "Traceback" not in loose.stderr
    for path in bad:
        assert f"warning: skipped {path}:" in loose.stdout, path
    assert f"{len(bad)} bad file(s) skipped (strict=false)" in loose.stdout
    assert "copied file(s) of runs already counted" in loose.stdout
    report = (out / "report.html").read_text()
    assert all(path in report for path in bad)
    fits = pd.read_csv(out / "fits.csv")
    no = fits[(fits["source"] == "measured") & (fits["points"] == "final")
              & (fits["compute_measure"] == "network_operations")
              & (fits["model_form"] == "polynomial")].iloc[0]
    assert no["n"] == 6 and no["num_runs"] == 6  # four good, one external, one with a bad curve


def test_cli_bad_dpi_and_unwritable_out_dir_fail_before_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for overrides, fragment in [(["figures.dpi=-1", f"out_dir={tmp_path / 'out'}"], "figures.dpi=-1"),
                                ([f"out_dir={tmp_path / 'a_file' / 'out'}"], "is not a folder")]:
        proc = _cli(tmp_path, "literature.root=/nonexistent", "results.root=null",
                    "within_family.enabled=false", *overrides, timeout=120)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr
        # checked before the literature is looked for (literature.root does not exist)
        assert "literature" not in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["a_file"]
