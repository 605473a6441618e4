"""Load this project's measured runs: every ``result.json`` under ``results.root``, and the
``curve.csv`` beside it.

Each run becomes one row under the paper's compute measures: ``forward_pass`` is
``fwd_flops_per_sample`` (2 x MACs), ``network_operations`` is ``train_flops`` (3 x forward x
samples seen) and ``hardware_burden`` is ``hardware_burden_flops`` (devices x peak x time).
Only runs with ``status == "ok"`` and a known error are fitted; the others are counted.

Besides the numbers, each row carries what the fits need to keep unlike runs apart:

- ``dataset`` and ``eval_set`` (``full n=10000``, ``subset n=300``, or ``unrecorded n=300`` for
  files without ``eval_is_subset``) and ``hardware`` (:func:`hardware_label`: device, CPU
  threads, precision): runs are fitted per (benchmark, dataset, eval set, hardware);
- ``config_id``: a configuration's identity, so replicates (same configuration, another seed)
  merge into one point. It is the resolved ``config`` minus the keys that do not change what is
  trained (:data:`analysis.constants.NON_IDENTITY_CONFIG_KEYS`); without a ``config``, the
  ``overrides`` minus the same keys; without either, the run is its own configuration;
- ``contended`` (True, False or None when the file predates the field) and the energy methods.

Older files without the fields added for issue 7 (``eval_is_subset``, ``contended``, ``config``)
load; a missing field is null, never a guess.

Finding the files (:func:`find_result_files`): every ``result.json`` below ``results.root``,
symlinks included. Symlinked folders are followed, wherever they point, and each real folder is
scanned once: a link back to a folder already scanned (a loop, or a second link to one target)
is named in the notes and not entered again. A file reached by two paths (a symlinked
``result.json``, or a folder reached twice) is read once, under its first path in the order
real paths first, then by path. A broken symlink, a folder that cannot be listed and anything
that is not a regular file are bad files.

Checking the values (:func:`read_result`): JSON ``NaN`` and ``Infinity`` (which Python's json
accepts) and numbers too large for a float are errors anywhere in the file. For runs with
``status: ok``, each number must also be plausible: FLOP counts between 1 and 1e28, error at
least 1/eval_samples (top-1) and 1e-6, time, energy, peak and device counts below ceilings set
3x to 100x above the largest on record (bounds and sources in :mod:`analysis.constants`).

Bad files: with ``strict`` (the default) the first bad file, by path, stops the analysis with
one line naming the file and the key; with ``strict=False`` each bad file is left out with one
warning line, and the count is reported.

Copies of one run (same ``run_id``, e.g. a run folder copied elsewhere under the root) are
counted once: the copy kept is the first, by path, among those with a ``curve.csv`` beside them
(else the first by path), and one warning names every file. Copies whose contents differ are
an error with ``strict`` (which one is right is unknown); without it, the same rule picks one
and the warning names the first key that differs. A file without a ``run_id`` (older runs) has
nothing to match copies by and counts on its own.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from analysis.constants import (
    BENCHMARK_DATASET, COUNT_ERROR_BENCHMARKS, COUNT_ERROR_RTOL, MAX_PLAUSIBLE_ENERGY_J,
    MAX_PLAUSIBLE_FLOPS, MAX_PLAUSIBLE_NUM_DEVICES, MAX_PLAUSIBLE_NUM_PARAMS,
    MAX_PLAUSIBLE_PEAK_FLOPS_PER_S, MAX_PLAUSIBLE_TRAIN_TIME_S, MAX_RESULT_JSON_BYTES,
    MEASURED_BENCHMARKS, MIN_PLAUSIBLE_ERROR, MIN_PLAUSIBLE_FLOPS, NON_IDENTITY_CONFIG_KEYS,
)
from analysis.errors import AnalysisError

STATUSES = ("ok", "diverged", "oom", "failed", "interrupted")
REQUIRED_KEYS = ("status", "benchmark", "error")
# result.json key -> column here. Numbers or null.
NUMERIC_KEYS = {
    "error": "error",
    "metric_value": "metric_value",
    "fwd_flops_per_sample": "forward_pass",
    "train_flops": "network_operations",
    "hardware_burden_flops": "hardware_burden",
    "train_time_s": "train_time_s",
    "energy_total_j": "energy_total_j",
    "co2_kg": "co2_kg",
    "train_samples": "train_samples",
    "num_params": "num_params",
    "scale": "scale",
    "seed": "seed",
    "eval_samples": "eval_samples",
    "num_devices": "num_devices",
    "peak_flops_per_s": "peak_flops_per_s",
    "num_threads": "num_threads",
}
# Plausible range of each number of a status-ok run: key -> (low, high, low allowed, why high).
# Sources in analysis/constants.py. Unknown is null, never 0: 0 fails every lower bound here.
_FLOPS = (MIN_PLAUSIBLE_FLOPS, MAX_PLAUSIBLE_FLOPS, True,
          "beyond any training run on record (MAX_PLAUSIBLE_FLOPS)")
PLAUSIBLE: dict[str, tuple[float, float, bool, str]] = {
    "fwd_flops_per_sample": _FLOPS,
    "train_flops": _FLOPS,
    "hardware_burden_flops": _FLOPS,
    "train_time_s": (0.0, MAX_PLAUSIBLE_TRAIN_TIME_S, False,
                     "3x the longest training run on record (MAX_PLAUSIBLE_TRAIN_TIME_S)"),
    "energy_total_j": (0.0, MAX_PLAUSIBLE_ENERGY_J, False,
                       "beyond any training run on record (MAX_PLAUSIBLE_ENERGY_J)"),
    "co2_kg": (0.0, math.inf, True, ""),
    "peak_flops_per_s": (0.0, MAX_PLAUSIBLE_PEAK_FLOPS_PER_S, False,
                         "beyond any device on record (MAX_PLAUSIBLE_PEAK_FLOPS_PER_S)"),
    "num_devices": (1.0, MAX_PLAUSIBLE_NUM_DEVICES, True,
                    "100x the largest run on record (MAX_PLAUSIBLE_NUM_DEVICES)"),
    "num_params": (1.0, MAX_PLAUSIBLE_NUM_PARAMS, True,
                   "100x the largest model on record (MAX_PLAUSIBLE_NUM_PARAMS)"),
    "train_samples": (1.0, math.inf, True, ""),
    "eval_samples": (1.0, math.inf, True, ""),
}
TEXT_KEYS = ("run_id", "started_at", "workload", "model", "dataset", "device_name", "device_type",
             "precision", "metric_name", "energy_cpu_method", "energy_gpu_method",
             "energy_ram_method")
BOOL_KEYS = ("eval_is_subset", "contended")
COLUMNS = ["run_id", "path", "folder", "status", "benchmark", "started_at", "year", *TEXT_KEYS[2:],
           *BOOL_KEYS, "energy_assumptions", "config_id", "config_identity", "identity_basis",
           *NUMERIC_KEYS.values(), "eval_set", "proxy", "hardware"]

# curve.csv: columns the frontier reads. ``error`` and ``train_flops`` were there from the start;
# ``hardware_burden_flops`` and ``window`` came with issue 7 and may be missing.
CURVE_REQUIRED = ("error", "train_flops")
CURVE_NUMERIC = ("eval_index", "train_flops", "hardware_burden_flops", "error")


def show(path: Any) -> str:
    """A path for a one-line message: control characters (a newline in a name) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


def _number(value: Any, key: str, path: Path) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        raise AnalysisError(f"{show(path)}: key {key!r} is {text}; expected a number or null")
    try:
        x = float(value)
    except OverflowError:
        raise AnalysisError(f"{show(path)}: key {key!r} is an integer of {len(str(value))} digits;"
                            " too large for a float") from None
    if not math.isfinite(x):
        raise AnalysisError(f"{show(path)}: key {key!r} is {x}; expected a finite number or null")
    return x


def _non_finite(data: Any) -> Optional[tuple[str, str]]:
    """(key path, what is wrong) for the first NaN, infinity or float-overflowing integer in
    ``data``.

    JSON has no NaN or infinity; Python's json reads the tokens ``NaN``, ``Infinity`` and
    ``-Infinity`` (and ``1e999``) as floats. The harness never writes them (allow_nan=False), so
    one anywhere in a result.json means the file was not written by a run.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        key, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return key, f"{v}; JSON has no NaN or infinity (unknown is null)"
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 1e308:
            return key, f"an integer of {len(str(abs(v)))} digits; too large for a float"
        if isinstance(v, dict):
            stack.extend((f"{key}.{k}" if key else str(k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{key}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def _check_plausible(row: dict[str, Any], path: Path) -> None:
    """The bounds of :data:`PLAUSIBLE` and the error floor, for a status-ok run."""
    for key, (low, high, low_ok, why) in PLAUSIBLE.items():
        v = row[NUMERIC_KEYS[key]]
        if math.isnan(v):
            continue
        if v < low or (v == low and not low_ok):
            bound = f">= {low:g}" if low_ok else f"> {low:g}"
            raise AnalysisError(f"{show(path)}: key {key!r} is {v:g}; must be {bound} (unknown is "
                                "null, never 0)")
        if v > high:
            raise AnalysisError(f"{show(path)}: key {key!r} is {v:g}; above {high:g}, {why}; "
                                "see analysis/constants.py")
    e = row["error"]
    if math.isnan(e):
        return
    # 1.0 is a real outcome (box AP, BLEU or F1 of exactly 0 after a short budget); log10(1) = 0
    # and 1/1 = 1 fit like any other error.
    if not 0.0 < e <= 1.0:
        raise AnalysisError(f"{show(path)}: key 'error' is {e:g}; must be a fraction in (0, 1] in "
                            "the paper's convention (e.g. 1 - top-1)")
    n = row["eval_samples"]
    if row["benchmark"] in COUNT_ERROR_BENCHMARKS and not math.isnan(n):
        floor = 1.0 / n
        if e < floor * (1.0 - COUNT_ERROR_RTOL):
            raise AnalysisError(f"{show(path)}: key 'error' is {e:g}; below 1/eval_samples = "
                                f"{floor:g}, the smallest non-zero error over {int(n)} samples")
    if e < MIN_PLAUSIBLE_ERROR:
        raise AnalysisError(f"{show(path)}: key 'error' is {e:g}; below {MIN_PLAUSIBLE_ERROR:g}, "
                            "finer than any benchmark's test set resolves (MIN_PLAUSIBLE_ERROR "
                            "in analysis/constants.py)")


def _bool(value: Any, key: str, path: Path) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise AnalysisError(f"{path}: key {key!r} is {value!r}; expected true, false or null")


def _year(started_at: Any) -> float:
    """Fractional year of an ISO timestamp (for the polynomial_year fit); NaN if unknown."""
    if not isinstance(started_at, str):
        return math.nan
    ts = pd.to_datetime(started_at, errors="coerce", utc=True)
    if pd.isna(ts):
        return math.nan
    return ts.year + (ts.day_of_year - 1) / 365.25


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_identity_key(key: str) -> bool:
    """False for keys that do not change what is trained (and anything below them)."""
    return not any(key == k or key.startswith(k + ".") for k in NON_IDENTITY_CONFIG_KEYS)


def config_identity(config: Any, overrides: Any, path: Path) -> tuple[str, str]:
    """(identity text, basis) of a run's configuration; see the module docstring.

    The text is canonical JSON, so two runs of one configuration give the same text whatever the
    key order. basis is ``config``, ``overrides`` or ``none`` (the run is its own configuration).
    """
    if config is not None:
        if not isinstance(config, dict):
            raise AnalysisError(f"{path}: key 'config' is {type(config).__name__}; expected an "
                                "object or null")
        flat = {k: v for k, v in _flatten(config).items() if _is_identity_key(k)}
        return json.dumps(flat, sort_keys=True, default=str), "config"
    if overrides is not None:
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise AnalysisError(f"{path}: key 'overrides' is {overrides!r}; expected a list of "
                                "strings or null")
        kept = []
        for o in overrides:
            key = o.lstrip("+~").split("=", 1)[0].strip()
            if _is_identity_key(key) and not key.startswith("hydra."):
                kept.append(o.lstrip("+~").strip())
        return json.dumps(sorted(kept)), "overrides"
    return json.dumps({"run": str(path.parent)}), "none"


def eval_set_label(is_subset: Optional[bool], eval_samples: float) -> str:
    """``full n=N``, ``subset n=N`` or ``unrecorded n=N`` (``n=?`` when the size is unknown)."""
    n = "?" if math.isnan(eval_samples) else f"{int(eval_samples)}"
    kind = {True: "subset", False: "full", None: "unrecorded"}[is_subset]
    return f"{kind} n={n}"


def _parse(path: Path) -> Any:
    """The JSON in ``path``; anything that is not a readable, regular, UTF-8 JSON file is an
    AnalysisError naming the file."""
    where = show(path)
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        target = os.readlink(path) if os.path.islink(path) else None
        raise AnalysisError(f"{where}: broken symlink to {show(target)}" if target is not None
                            else f"{where}: cannot be read: no such file") from None
    except OSError as e:
        raise AnalysisError(f"{where}: cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AnalysisError(f"{where}: not a regular file")
    if st.st_size > MAX_RESULT_JSON_BYTES:
        raise AnalysisError(f"{where}: {st.st_size} bytes; a result.json is a few kB (over "
                            f"{MAX_RESULT_JSON_BYTES} bytes is not read: MAX_RESULT_JSON_BYTES)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnalysisError(f"{where}: cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AnalysisError(f"{where}: not UTF-8 text (byte {e.start}: "
                            f"0x{raw[e.start]:02x}); binary or corrupt") from None
    if not text.strip():
        raise AnalysisError(f"{where}: empty file (a run that was cut off while writing?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AnalysisError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise AnalysisError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        raise AnalysisError(f"{where}: not valid JSON ({str(e).splitlines()[0]})") from None


def read_result(path: Path) -> dict[str, Any]:
    """One result.json as a flat row; bad content raises an error naming the file and key.

    See the module docstring for what is checked. The row's ``path`` is the path given;
    ``folder`` is the real folder of the file (symlinks resolved), where curve.csv is read.
    """
    return _read(path)[0]


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(row, parsed JSON) of one result.json; see :func:`read_result`."""
    data = _parse(path)
    where = show(path)
    if not isinstance(data, dict):
        raise AnalysisError(f"{where}: expected one JSON object, got {type(data).__name__}")
    bad = _non_finite(data)
    if bad is not None:
        raise AnalysisError(f"{where}: key {bad[0]!r} is {bad[1]}")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise AnalysisError(f"{where}: missing key {key!r} (DESIGN.md result schema)")
    status = data["status"]
    if not isinstance(status, str) or status not in STATUSES:
        raise AnalysisError(f"{where}: key 'status' is {status!r}; valid: {', '.join(STATUSES)}")
    bench = data["benchmark"]
    if bench not in MEASURED_BENCHMARKS and (status == "ok" or not isinstance(bench, (str, type(None)))):
        raise AnalysisError(f"{where}: key 'benchmark' is {bench!r}; valid: "
                            f"{', '.join(MEASURED_BENCHMARKS)}")
    row: dict[str, Any] = {"path": str(path), "folder": os.path.dirname(os.path.realpath(path)),
                           "status": status, "benchmark": bench}
    for key in TEXT_KEYS:
        v = data.get(key)
        row[key] = None if v is None else str(v)
    for key in BOOL_KEYS:
        row[key] = _bool(data.get(key), key, path)
    for key, col in NUMERIC_KEYS.items():
        row[col] = _number(data.get(key), key, path)
    ea = data.get("energy_assumptions")
    if ea is not None and not isinstance(ea, dict):
        raise AnalysisError(f"{where}: key 'energy_assumptions' is {ea!r}; expected an object or "
                            "null")
    row["energy_assumptions"] = None if ea is None else json.dumps(ea, sort_keys=True, default=str)
    n_eval = row["eval_samples"]
    if not math.isnan(n_eval) and n_eval != int(n_eval):
        raise AnalysisError(f"{where}: key 'eval_samples' is {n_eval}; expected a whole number")
    if status == "ok":
        _check_plausible(row, path)
    ident, basis = config_identity(data.get("config"), data.get("overrides"), path)
    row["config_identity"] = ident
    row["config_id"] = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:10]
    row["identity_basis"] = basis
    row["year"] = _year(data.get("started_at"))
    row["eval_set"] = eval_set_label(row["eval_is_subset"], n_eval)
    if row["dataset"] is None:
        row["dataset"] = "unknown"
    # A proxy is any dataset that is not the benchmark's own; an unknown dataset counts as one
    # (nothing says it is the benchmark's data).
    row["proxy"] = row["dataset"] != BENCHMARK_DATASET.get(bench)
    row["hardware"] = hardware_label(row)
    return row, data


def device_label(row: Any) -> str:
    """``NVIDIA H100 (cuda)``, ``4 x NVIDIA H100 (cuda)``; ``device not recorded`` without a name."""
    name = row.get("device_name") or "device not recorded"
    dtype = row.get("device_type")
    n = row.get("num_devices")
    s = f"{name} ({dtype})" if dtype else str(name)
    return f"{int(n)} x {s}" if isinstance(n, float) and not math.isnan(n) and n > 1 else s


def hardware_label(row: Any) -> str:
    """What a run ran on, as the measured fits keep it apart: device (and count), CPU threads,
    precision, e.g. ``AMD EPYC (cpu), 2 threads, fp32`` or ``NVIDIA H200 (cuda), bf16``.

    Runs with different labels are never pooled in one fit (:mod:`analysis.points`): hardware
    burden is devices x peak x time, and a CPU's peak (and so its burden) is derived from the
    threads it used (harness.measure.peaks); the precision changes the time and can change the
    error. FLOP counts do not depend on the hardware, but a fit stays on one machine so that
    its frontier, J/FLOP and FLOP/s describe that machine.
    """
    parts = [device_label(row)]
    threads = row.get("num_threads")
    if row.get("device_type") == "cpu" and isinstance(threads, float) and not math.isnan(threads):
        parts.append(f"{int(threads)} thread{'s' if threads != 1 else ''}")
    parts.append(row.get("precision") or "precision not recorded")
    return ", ".join(parts)


# --- finding the files ------------------------------------------------------------------------

@dataclass
class Found:
    """What :func:`find_result_files` found: files to read, paths that failed, paths not read."""

    files: list[Path] = field(default_factory=list)  # one path per real file, sorted
    bad: list[tuple[Path, str]] = field(default_factory=list)  # (path, one-line message)
    # One line per path not read: a file or folder reached a second time (read once), or a
    # broken symlink that is not named result.json (nothing says it held runs).
    not_read: list[str] = field(default_factory=list)


def _entries(folder: Path, found: Found) -> Iterator[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        found.bad.append((folder, f"{show(folder)}: folder cannot be listed: {e.strerror or e}"))
        return iter(())
    return iter(entries)


def find_result_files(base: Path) -> Found:
    """Every ``result.json`` under ``base``, following symlinked folders once each (see the
    module docstring). Files are returned sorted by path; a file reached by a second path is
    named in ``not_read`` and returned once (under a real path before one through a link)."""
    found = Found()
    seen_dirs: dict[tuple[int, int], Path] = {}
    candidates: list[tuple[bool, Path]] = []  # (reached through a symlinked folder, path)
    base_st = base.stat()
    seen_dirs[(base_st.st_dev, base_st.st_ino)] = base
    links: list[Path] = []  # symlinked folders, entered after every real folder

    def scan(root: Path, via_link: bool) -> None:
        stack = [root]
        while stack:
            folder = stack.pop()
            subdirs = []
            for e in _entries(folder, found):
                p = Path(e.path)
                try:
                    is_link = e.is_symlink()
                    is_dir = e.is_dir()  # follows symlinks; False for a broken link
                except OSError:
                    is_link, is_dir = False, False
                if e.name == "result.json" and not is_dir:
                    candidates.append((via_link or is_link, p))
                elif is_dir and is_link:
                    links.append(p)
                elif is_dir:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError as err:
                        found.bad.append((p, f"{show(p)}: folder cannot be read: "
                                             f"{err.strerror or err}"))
                        continue
                    key = (st.st_dev, st.st_ino)
                    if key in seen_dirs:
                        found.not_read.append(f"{show(p)}: the folder already scanned as "
                                              f"{show(seen_dirs[key])}: not scanned again")
                        continue
                    seen_dirs[key] = p
                    subdirs.append(p)
                elif is_link and not os.path.exists(p):
                    found.not_read.append(f"{show(p)}: broken symlink to "
                                          f"{show(os.readlink(p))}: not followed")
            stack.extend(reversed(subdirs))

    scan(base, False)
    while links:
        links.sort()
        link = links.pop(0)
        try:
            st = link.stat()
        except OSError as e:
            found.bad.append((link, f"{show(link)}: symlinked folder cannot be read: "
                                    f"{e.strerror or e}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            found.not_read.append(f"{show(link)}: symlink to {show(os.path.realpath(link))}, the "
                                  f"folder already scanned as {show(seen_dirs[key])}: not scanned "
                                  "again")
            continue
        seen_dirs[key] = link
        scan(link, True)

    seen_files: dict[tuple[int, int], Path] = {}
    for _, p in sorted(candidates, key=lambda c: (c[0], str(c[1]))):
        try:
            st = p.stat()
        except OSError:
            found.files.append(p)  # read_result names the broken link
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            found.not_read.append(f"{show(p)}: the same file as {show(seen_files[key])} (through "
                                  "a symlink): read once")
            continue
        seen_files[key] = p
        found.files.append(p)
    found.files.sort(key=str)
    return found


# --- duplicates -------------------------------------------------------------------------------

def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> Optional[str]:
    """The first key whose value differs: the keys the fits read first, then the rest by name."""
    fa, fb = _flatten(a), _flatten(b)
    first = [*REQUIRED_KEYS, *NUMERIC_KEYS, "dataset", "config"]
    keys = sorted(set(fa) | set(fb), key=lambda k: (next(
        (i for i, f in enumerate(first) if k == f or k.startswith(f + ".")), len(first)), k))
    for k in keys:
        if json.dumps(fa.get(k), sort_keys=True, default=str) != json.dumps(fb.get(k), sort_keys=True, default=str):
            return k
    return None


def drop_duplicates(rows: list[dict[str, Any]], strict: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per ``run_id``; returns the kept rows (in their order) and one warning per copied
    run. Which copy is kept, and when differing copies are an error: see the module docstring."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("run_id"):  # null or "": nothing to match copies by
            by_id.setdefault(r["run_id"], []).append(r)
    dropped: set[int] = set()
    warnings = []
    for run_id, copies in sorted(by_id.items()):
        if len(copies) < 2:
            continue
        ranked = sorted(copies, key=lambda r: (not (Path(r["folder"]) / "curve.csv").is_file(),
                                               r["path"]))
        kept, others = ranked[0], ranked[1:]
        differ = []
        for o in others:
            k = _first_difference(kept["_data"], o["_data"])
            if k is not None:
                differ.append((o, k))
        if differ and strict:
            o, k = differ[0]
            raise AnalysisError(f"run_id {run_id!r} is in {len(copies)} files whose contents "
                                f"differ (key {k!r}): {show(kept['path'])} and {show(o['path'])}; "
                                "which is right is unknown [strict=false keeps "
                                f"{show(kept['path'])}]")
        dropped.update(id(o) for o in others)
        msg = (f"run_id {run_id!r} is in {len(copies)} files: kept {show(kept['path'])} (first by "
               "path with a curve.csv, else first by path); ignored "
               + ", ".join(show(o["path"]) for o in others))
        if differ:
            msg += "; contents differ in key " + ", ".join(
                f"{k!r} ({show(o['path'])})" for o, k in differ)
        warnings.append(msg)
    return [r for r in rows if id(r) not in dropped], warnings


# --- loading ----------------------------------------------------------------------------------

STRICT_HINT = " [strict=false skips bad run files with a warning]"


@dataclass
class RunScan:
    """The measured runs under ``results.root`` and what was left out, for the summary and report.

    ``skipped``: one line per bad file left out (strict=false), path first. ``duplicates``: one
    line per run found in several files. ``not_read``: one line per path not read (see
    :class:`Found`). ``bad_curves``: one line per curve.csv skipped (strict=false; filled by
    :func:`load_curves`). ``note``: why there are no runs at all.
    """

    runs: pd.DataFrame
    num_files: int = 0
    skipped: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    not_read: list[str] = field(default_factory=list)
    bad_curves: list[str] = field(default_factory=list)
    note: Optional[str] = None

    @property
    def num_copies(self) -> int:
        """Files ignored as copies of a run already counted."""
        return self.num_files - len(self.skipped) - len(self.runs)

    def warnings(self) -> list[str]:
        """Every line worth a warning, in a stable order."""
        return ([f"skipped {m}" for m in self.skipped + self.bad_curves] + self.duplicates
                + [f"not read: {a}" for a in self.not_read])


def scan_runs(root: Optional[str], strict: bool = True) -> RunScan:
    """All runs under ``root`` (recursive, symlinks followed), one per run_id, sorted by path.

    A root that does not exist (a fresh clone has no results/ yet) means no runs, with a note.
    ``strict``: the first bad file (by path) raises an AnalysisError naming file and key;
    otherwise bad files are skipped, each named in ``skipped``.
    """
    if root is None:
        return RunScan(pd.DataFrame(columns=COLUMNS))
    base = Path(root)
    if not base.exists():
        return RunScan(pd.DataFrame(columns=COLUMNS),
                       note=f"results.root={root} does not exist: no measured runs")
    if not base.is_dir():
        raise AnalysisError(f"results.root={root} is not a folder")
    found = find_result_files(base)
    items: list[tuple[Path, Optional[str]]] = [(p, None) for p in found.files] + list(found.bad)
    items.sort(key=lambda it: str(it[0]))
    rows, skipped = [], []
    for path, problem in items:
        try:
            if problem is not None:
                raise AnalysisError(problem)
            row, data = _read(path)
            row["_data"] = data
            rows.append(row)
        except AnalysisError as e:
            if strict:
                raise AnalysisError(f"{e}{STRICT_HINT}") from None
            skipped.append(str(e))
    rows, duplicates = drop_duplicates(rows, strict)
    for r in rows:
        del r["_data"]
    return RunScan(pd.DataFrame(rows, columns=COLUMNS), num_files=len(items), skipped=skipped,
                   duplicates=duplicates, not_read=found.not_read)


def load_runs(root: Optional[str], strict: bool = True) -> pd.DataFrame:
    """The runs of :func:`scan_runs` as a frame; ``attrs["note"]`` says why there are none."""
    scan = scan_runs(root, strict)
    if scan.note:
        scan.runs.attrs["note"] = scan.note
    return scan.runs


def fittable(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that enter the fits: status ok and a known error."""
    if runs.empty:
        return runs
    return runs[(runs["status"] == "ok") & runs["error"].notna()].reset_index(drop=True)


def read_curve(path: Path) -> pd.DataFrame:
    """One curve.csv: the columns in :data:`CURVE_NUMERIC` as floats (NaN where a cell is empty
    or the column predates issue 7) and ``window`` as text (None where absent).

    Bad content raises an error naming the file, line and column.
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=list(CURVE_REQUIRED))
    except (OSError, UnicodeDecodeError, ValueError) as e:  # pandas' ParserError is a ValueError
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise AnalysisError(f"{show(path)}: cannot be parsed as CSV: {first}") from None
    missing = [c for c in CURVE_REQUIRED if c not in raw.columns]
    if missing:
        raise AnalysisError(f"{show(path)}: missing column(s) {missing} (curve.csv: one row per "
                            "evaluation)")
    out = pd.DataFrame(index=raw.index)
    for col in CURVE_NUMERIC:
        if col not in raw.columns:
            out[col] = math.nan
            continue
        cells = raw[col].fillna("").str.strip()
        num = pd.to_numeric(cells.where(cells != ""), errors="coerce")
        # "inf" parses as a number: JSON and CSV from the harness never hold one
        bad = (num.isna() | ~np.isfinite(num.fillna(0.0))) & (cells != "")
        if bad.any():
            i = int(bad.idxmax())
            raise AnalysisError(f"{show(path)}: line {i + 2}, column {col!r} is "
                                f"{raw.at[i, col]!r}; expected a finite number or an empty cell")
        if col != "eval_index" and (num < 0).any():
            i = int((num < 0).idxmax())
            raise AnalysisError(f"{show(path)}: line {i + 2}, column {col!r} is {num[i]}; must be "
                                ">= 0")
        if col in ("train_flops", "hardware_burden_flops") and (num > MAX_PLAUSIBLE_FLOPS).any():
            i = int((num > MAX_PLAUSIBLE_FLOPS).idxmax())
            raise AnalysisError(f"{show(path)}: line {i + 2}, column {col!r} is {num[i]:g}; above "
                                f"{MAX_PLAUSIBLE_FLOPS:g}, beyond any training run on record "
                                "(MAX_PLAUSIBLE_FLOPS in analysis/constants.py)")
        out[col] = num.astype(float)
    if (out["error"] > 1).any():
        i = int((out["error"] > 1).idxmax())
        raise AnalysisError(f"{show(path)}: line {i + 2}, column 'error' is "
                            f"{out.at[i, 'error']}; must be a fraction in [0, 1]")
    tiny = (out["error"] > 0) & (out["error"] < MIN_PLAUSIBLE_ERROR)
    if tiny.any():
        i = int(tiny.idxmax())
        raise AnalysisError(f"{show(path)}: line {i + 2}, column 'error' is "
                            f"{out.at[i, 'error']:g}; below {MIN_PLAUSIBLE_ERROR:g}, finer than "
                            "any benchmark's test set resolves (MIN_PLAUSIBLE_ERROR)")
    out["window"] = raw["window"].where(raw["window"] != "", None) if "window" in raw.columns else None
    out.attrs["has_burden"] = "hardware_burden_flops" in raw.columns
    out.attrs["has_window"] = "window" in raw.columns
    return out


def load_curves(runs: pd.DataFrame, strict: bool = True,
                skipped: Optional[list[str]] = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every evaluation row of the given runs' curve.csv, tagged with the run's ``path``.

    curve.csv is read from the run's real folder (``folder``: beside the file a symlinked
    result.json points to). Returns the rows and counts for the report: ``no_curve`` (run
    folders without curve.csv), ``bad_curve`` (unreadable ones skipped, strict=False),
    ``no_burden_column`` and ``no_window_column`` (curves that predate those columns). With
    ``strict`` a bad curve.csv raises; otherwise its message is appended to ``skipped`` and the
    run keeps its final point but adds nothing to the frontier.
    """
    counts = {"no_curve": 0, "no_burden_column": 0, "no_window_column": 0}
    frames = []
    if runs.empty:
        pairs: list[tuple[str, Any]] = []
    else:
        folders = runs["folder"] if "folder" in runs else pd.Series([None] * len(runs))
        pairs = list(zip(runs["path"], folders))
    for path, folder in pairs:
        cpath = Path(folder if isinstance(folder, str) else Path(path).parent) / "curve.csv"
        if not cpath.is_file():
            counts["no_curve"] += 1
            continue
        try:
            c = read_curve(cpath)
        except AnalysisError as e:
            if strict:
                raise AnalysisError(f"{e}{STRICT_HINT}") from None
            counts["bad_curve"] = counts.get("bad_curve", 0) + 1
            if skipped is not None:
                skipped.append(str(e))
            continue
        counts["no_burden_column"] += not c.attrs["has_burden"]
        counts["no_window_column"] += not c.attrs["has_window"]
        c.insert(0, "path", path)
        frames.append(c)
    cols = ["path", *CURVE_NUMERIC, "window"]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return rows[cols], counts
