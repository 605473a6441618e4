"""``python -m analysis.compare``: two sweeps of one grid paired by overrides, seed ignored."""
from __future__ import annotations

import pytest

from analysis.compare import compare, main, read_errors, spread

HEADER = "job,overrides,status,skipped,metric_name,metric_value,error,failure_reason,train_flops,train_time_s,energy_total_j,wall_time_s,run_dir\n"


def _sweep(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{i},{ov},{status},False,f1,,{err},,,,,,x\n" for i, (ov, status, err) in enumerate(rows)]
    (folder / "sweep.csv").write_text(HEADER + "".join(lines))
    return folder


def test_pairs_by_overrides_in_any_order_ignoring_seed(tmp_path):
    a = _sweep(tmp_path / "a", [("scale=1 trainer.epochs=2 experiment=x", "ok", 0.30),
                                ("scale=2 trainer.epochs=2 experiment=x", "ok", 0.20),
                                ("scale=4 trainer.epochs=2 experiment=x", "ok", 0.10)])
    b = _sweep(tmp_path / "b", [("experiment=x seed=1 trainer.epochs=2 scale=2", "ok", 0.23),
                                ("experiment=x seed=1 scale=1 trainer.epochs=2", "ok", 0.29),
                                ("experiment=x seed=1 scale=8 trainer.epochs=2", "ok", 0.05)])
    pairs, unmatched = compare(a, b)
    assert [(p.error_a, p.error_b) for p in pairs] == [(0.30, 0.29), (0.20, 0.23)]
    assert [round(p.diff, 6) for p in pairs] == [-0.01, 0.03]
    assert spread(pairs) == pytest.approx((0.02, 0.03))
    assert unmatched == ["experiment=x scale=4 trainer.epochs=2", "experiment=x scale=8 trainer.epochs=2"]


def test_a_failed_run_has_no_error_and_fails_within(tmp_path, capsys):
    a = _sweep(tmp_path / "a", [("scale=1", "ok", 0.30), ("scale=2", "ok", 0.20)])
    b = _sweep(tmp_path / "b", [("scale=1", "ok", 0.305), ("scale=2", "diverged", "")])
    assert read_errors(b) == {"scale=1": 0.305, "scale=2": None}
    assert main([str(a), str(b / "sweep.csv")]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 grid points with both errors" in out and "largest 0.0050" in out
    assert main([str(a), str(b), "--within", "0.01"]) == 1  # a missing error is not "within"


def test_within_passes_and_fails_on_the_largest_difference(tmp_path, capsys):
    a = _sweep(tmp_path / "a", [("scale=1", "ok", 0.30), ("scale=2", "ok", 0.20)])
    b = _sweep(tmp_path / "b", [("scale=1 seed=3", "ok", 0.30), ("scale=2 seed=3", "ok", 0.212)])
    assert main([str(a), str(b), "--within", "0.015"]) == 0
    assert main([str(a), str(b), "--within", "0.01"]) == 1
    assert "NOT within 0.01: largest 0.0120" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "nowhere")]) == 2
    assert "no sweep.csv" in capsys.readouterr().err
    dup = _sweep(tmp_path / "dup", [("scale=1 seed=0", "ok", 0.3), ("scale=1 seed=1", "ok", 0.3)])
    assert main([str(dup), str(dup)]) == 2
    assert "appears twice" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main([str(tmp_path / "bad.csv"), str(dup)]) == 2
    assert "is this a sweep.csv" in capsys.readouterr().err
    other = _sweep(tmp_path / "other", [("scale=9", "ok", 0.1)])
    assert main([str(other), str(_sweep(tmp_path / "o2", [("scale=8", "ok", 0.1)]))]) == 2
    assert "no grid point in common" in capsys.readouterr().err
