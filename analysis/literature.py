"""Find, fetch and load the published data: Thompson et al.'s CSVs and Epoch AI's database.

The files never live in the project. They are read from ``literature.root`` when given, else from
the cache, which is filled from pinned URLs (sha256-checked) only when ``literature.download`` is
true. Loading validates every cell the analysis uses and names file, line and column on failure.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from analysis.constants import (
    EPOCH_FILENAME, EPOCH_SHA256, EPOCH_SUBDIR, EPOCH_URL, THOMPSON_FIRST_DATA_LINE,
    THOMPSON_HEADER_ROWS_SKIPPED, THOMPSON_SUBDIR, THOMPSON_URL, BenchmarkSpec,
)
from analysis.errors import AnalysisError

log = logging.getLogger(__name__)

# Columns every Thompson CSV must have (the metric column comes from the benchmark spec).
REQUIRED_COLUMNS = ("name", "year", "flops", "multiadds", "network_operations", "hardware_burden")
NUMERIC_COLUMNS = ("year", "flops", "multiadds", "network_operations", "hardware_burden")


@dataclass
class SourceFile:
    """A data file the analysis read, with its provenance for the report."""

    label: str
    path: Path
    sha256: str
    pinned_sha256: str
    origin: str  # "literature.root", "cache" or "download"

    @property
    def matches_pin(self) -> bool:
        return self.sha256 == self.pinned_sha256


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch ``url`` into ``dest`` atomically; refuse it if the sha256 differs from the pin."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    except OSError as e:
        raise AnalysisError(f"literature.cache_dir: cannot write {dest.parent}: "
                            f"{e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        got = sha256_of(Path(tmp))
        if got != sha256:
            raise AnalysisError(f"download of {url} has sha256 {got}, expected the pinned {sha256}; "
                                "not using it")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        raise AnalysisError(f"could not download {url}: {e}; pass literature.root=DIR to use a local "
                            "copy") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def locate(subdir: str, filename: str, url: str, sha256: str, label: str, root: Optional[str],
           cache_dir: str, download: bool, required: bool = True,
           shared_root: Optional[str] = None) -> Optional[SourceFile]:
    """Find one literature file: literature.root first, then the cache, then the project's shared
    copy (``literature.shared_root``, when it holds the file), then (if allowed) the URL.

    ``root`` may point at the literature folder (holding ``subdir/``) or at ``subdir`` itself.
    The shared copy is checked against the pinned sha256 like any other (``matches_pin``).
    """
    if root is not None:
        base = Path(root)
        for cand in (base / subdir / filename, base / filename):
            if cand.is_file():
                return SourceFile(label, cand, sha256_of(cand), sha256, "literature.root")
        if required:
            raise AnalysisError(f"literature file not found: {base / subdir / filename} "
                                f"(literature.root={root})")
        return None
    cached = Path(cache_dir) / subdir / filename
    if cached.is_file():
        got = sha256_of(cached)
        if got != sha256:
            raise AnalysisError(f"cached file {cached} has sha256 {got}, expected {sha256}; delete "
                                "it and rerun with literature.download=true")
        return SourceFile(label, cached, got, sha256, "cache")
    if shared_root is not None:
        for cand in (Path(shared_root) / subdir / filename, Path(shared_root) / filename):
            if cand.is_file():
                return SourceFile(label, cand, sha256_of(cand), sha256, "literature.shared_root")
    if download:
        log.info("downloading %s", url)
        _download(url, cached, sha256)
        return SourceFile(label, cached, sha256, sha256, "download")
    if required:
        shared = f" nor in literature.shared_root={shared_root}" if shared_root is not None else ""
        raise AnalysisError(f"literature data not available offline: {filename} is not in "
                            f"literature.cache_dir={cache_dir}{shared}; pass literature.root=DIR "
                            "(e.g. ../shared/data/literature) or allow literature.download=true")
    return None


def locate_thompson(spec: BenchmarkSpec, root: Optional[str], cache_dir: str, download: bool,
                    shared_root: Optional[str] = None) -> SourceFile:
    return locate(THOMPSON_SUBDIR, spec.filename, THOMPSON_URL.format(filename=spec.filename),
                  spec.sha256, f"Thompson et al. 2022: {spec.title}", root, cache_dir, download,
                  shared_root=shared_root)


def locate_epoch(root: Optional[str], cache_dir: str, download: bool,
                 shared_root: Optional[str] = None) -> Optional[SourceFile]:
    return locate(EPOCH_SUBDIR, EPOCH_FILENAME, EPOCH_URL, EPOCH_SHA256,
                  "Epoch AI: All ML Systems", root, cache_dir, download, required=False,
                  shared_root=shared_root)


def _numeric(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Column as float; a cell that is present but not a number is an error naming its line."""
    raw = df[column]
    text = raw.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & (text != "") & values.isna()
    if bad.any():
        i = bad[bad].index[0]
        raise AnalysisError(f"{path}: line {int(df.loc[i, '_line'])} ({_row_name(df, i)}): column "
                            f"{column!r} has {raw.loc[i]!r}, which is not a number")
    return values.astype(float)


def _row_name(df: pd.DataFrame, i) -> str:
    name = df.loc[i, "name"] if "name" in df.columns else None
    return f"model {name!r}" if isinstance(name, str) else "unnamed row"


def load_thompson(spec: BenchmarkSpec, source: SourceFile) -> pd.DataFrame:
    """Load one benchmark CSV into tidy rows: name, year, error and the four compute measures.

    Error follows the paper: 1 - metric/100. ``forward_pass`` is ``flops``, or 2 x ``multiadds``
    when only that is given (the notebooks' ``flops.combine_first(multiadds * 2)``).
    ``network_operations`` and ``hardware_burden`` are used as given. Rows without the metric are
    dropped (the notebooks' formula API drops them too); the count is kept in ``attrs``.
    """
    path = source.path
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=True, skip_blank_lines=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise AnalysisError(f"{path}: cannot be parsed as CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in (*REQUIRED_COLUMNS, spec.metric_column) if c not in df.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column(s) {missing}; is this the Thompson et al. CSV "
                            f"for {spec.title}?")
    if len(df) < THOMPSON_HEADER_ROWS_SKIPPED:
        raise AnalysisError(f"{path}: has no data rows (expected 3 sub-header rows, then data)")
    df = df.iloc[THOMPSON_HEADER_ROWS_SKIPPED:].copy()
    # File line of each row: header is line 1, the three sub-header rows are lines 2-4.
    df["_line"] = np.arange(len(df)) + THOMPSON_FIRST_DATA_LINE
    df = df.reset_index(drop=True)
    # A fully empty line (trailing blank rows) carries nothing.
    df = df[df.drop(columns="_line").notna().any(axis=1)].reset_index(drop=True)

    num = {c: _numeric(df, c, path) for c in (*NUMERIC_COLUMNS, spec.metric_column)}
    metric = num[spec.metric_column]
    out = pd.DataFrame({
        "benchmark": spec.name,
        "name": df["name"].astype("string").str.strip(),
        "line": df["_line"].astype(int),
        "year": num["year"],
        "metric_pct": metric,
        "error": 1.0 - metric / 100.0,
        "forward_pass": num["flops"].combine_first(num["multiadds"] * 2.0),
        "network_operations": num["network_operations"],
        "hardware_burden": num["hardware_burden"],
    })
    has_metric = out["metric_pct"].notna()
    out.attrs["dropped_no_metric"] = int((~has_metric).sum())
    out = out[has_metric].reset_index(drop=True)
    for i in out.index:
        e = out.at[i, "error"]
        where = f"{path}: line {out.at[i, 'line']} (model {out.at[i, 'name']!r})"
        if not 0.0 < e < 1.0:
            raise AnalysisError(f"{where}: {spec.metric_column}={out.at[i, 'metric_pct']} gives error "
                                f"{e:.4g}, outside (0, 1); the metric must be a percentage")
        if pd.isna(out.at[i, "year"]):
            raise AnalysisError(f"{where}: column 'year' is empty")
        for c in ("forward_pass", "network_operations", "hardware_burden"):
            v = out.at[i, c]
            if not pd.isna(v) and v <= 0:
                raise AnalysisError(f"{where}: {c}={v} must be positive (missing is an empty cell, "
                                    "never 0)")
    out.attrs["source"] = source
    return out


def load_epoch(source: SourceFile) -> pd.DataFrame:
    """Epoch AI systems with a training compute and a publication date (context figure only)."""
    path = source.path
    try:
        df = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise AnalysisError(f"{path}: cannot be parsed as CSV: {str(e).splitlines()[0]}") from None
    need = ["Model", "Domain", "Publication date", "Training compute (FLOP)"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column(s) {missing}")
    out = pd.DataFrame({
        "model": df["Model"],
        "domain": df["Domain"].fillna("Other").astype(str).str.split(",").str[0].str.strip(),
        "date": pd.to_datetime(df["Publication date"], errors="coerce"),
        "train_flops": pd.to_numeric(df["Training compute (FLOP)"], errors="coerce"),
    })
    out = out[out["date"].notna() & (out["train_flops"] > 0)].reset_index(drop=True)
    out.attrs["source"] = source
    return out
