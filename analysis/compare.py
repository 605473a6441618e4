"""``python -m analysis.compare A B``: do two sweeps of the same grid give the same errors?

Reads the two sweeps' ``sweep.csv`` (a folder or the file itself), pairs their jobs by overrides
(ignoring ``seed`` and any other key named with ``--ignore``), and prints one row per grid point
with both errors and their difference, then the median and largest absolute difference. Used to
state a grid's seed-to-seed spread (the same grid at another seed) and to check that a re-run
reproduces committed errors within it (``--within``: exit 1 when a difference is larger).

    python -m analysis.compare results/reference/amd-epyc-2c/ner results/sweeps/ner-seed1
    python -m analysis.compare results/reference/amd-epyc-2c/ner results/sweeps/ner-rerun --within 0.01
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

SWEEP_CSV = "sweep.csv"  # harness.sweep.SWEEP_CSV (analysis reads files, it does not import the harness)


@dataclass(frozen=True)
class Pair:
    """One grid point of both sweeps."""

    point: str  # its overrides, sorted, without the ignored keys
    error_a: Optional[float]
    error_b: Optional[float]

    @property
    def diff(self) -> Optional[float]:
        """error_b - error_a; None when either run has no error (it failed or was skipped)."""
        if self.error_a is None or self.error_b is None:
            return None
        return self.error_b - self.error_a


def _csv_path(where: Path) -> Path:
    path = where / SWEEP_CSV if where.is_dir() else where
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no {SWEEP_CSV} (a sweep writes it into its folder when it ends)")
    return path


def _point(overrides: str, ignore: Sequence[str]) -> str:
    kept = [o for o in overrides.split() if o.split("=", 1)[0].lstrip("+~") not in ignore]
    return " ".join(sorted(kept))


def read_errors(where: Path, ignore: Sequence[str] = ("seed",)) -> dict[str, Optional[float]]:
    """{grid point: error} of one sweep; error None for a job that did not end ``ok``."""
    path = _csv_path(Path(where))
    errors: dict[str, Optional[float]] = {}
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if "overrides" not in row or "error" not in row:
                raise ValueError(f"{path}:{line}: no 'overrides' or 'error' column; is this a sweep.csv?")
            point = _point(row["overrides"] or "", ignore)
            if point in errors:
                raise ValueError(f"{path}:{line}: grid point {point!r} appears twice once {', '.join(ignore)} "
                                 "are ignored")
            value = row["error"].strip() if row.get("status") == "ok" else ""
            try:
                error = float(value) if value else None
            except ValueError:
                raise ValueError(f"{path}:{line}: error {value!r} is not a number") from None
            errors[point] = error if error is None or math.isfinite(error) else None
    return errors


def compare(a: Path, b: Path, ignore: Sequence[str] = ("seed",)) -> tuple[list[Pair], list[str]]:
    """(the grid points both sweeps ran, in A's order; the points only one of them has)."""
    ea, eb = read_errors(a, ignore), read_errors(b, ignore)
    pairs = [Pair(p, ea[p], eb[p]) for p in ea if p in eb]
    unmatched = [p for p in ea if p not in eb] + [p for p in eb if p not in ea]
    return pairs, unmatched


def spread(pairs: Sequence[Pair]) -> tuple[Optional[float], Optional[float]]:
    """(median, largest) absolute error difference over the pairs where both runs have an error."""
    diffs = [abs(p.diff) for p in pairs if p.diff is not None]
    if not diffs:
        return None, None
    return statistics.median(diffs), max(diffs)


def _fmt(x: Optional[float], spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="sweep folder (or its sweep.csv), e.g. the committed reference")
    parser.add_argument("b", type=Path, help="the other sweep of the same grid")
    parser.add_argument("--ignore", action="append", default=["seed"], metavar="KEY",
                        help="override key that may differ between the sweeps (seed always is)")
    parser.add_argument("--within", type=float, default=None, metavar="ERR",
                        help="exit 1 unless every paired error differs by at most ERR (absolute)")
    args = parser.parse_args(argv)
    try:
        pairs, unmatched = compare(args.a, args.b, args.ignore)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: no grid point in common between {args.a} and {args.b}", file=sys.stderr)
        return 2
    width = max(len(p.point) for p in pairs)
    print(f"{'grid point':<{width}}  {'error A':>8}  {'error B':>8}  {'B - A':>8}")
    for p in pairs:
        print(f"{p.point:<{width}}  {_fmt(p.error_a):>8}  {_fmt(p.error_b):>8}  {_fmt(p.diff, '+.4f'):>8}")
    median, largest = spread(pairs)
    n = sum(p.diff is not None for p in pairs)
    print(f"{n} of {len(pairs)} grid points with both errors: |B - A| median {_fmt(median)}, largest {_fmt(largest)}")
    if unmatched:
        print(f"in one sweep only ({len(unmatched)}): " + "; ".join(unmatched))
    if args.within is not None:
        if n < len(pairs) or largest is None or largest > args.within:
            print(f"NOT within {args.within}: " + ("a run has no error" if n < len(pairs) else f"largest {largest:.4f}"))
            return 1
        print(f"within {args.within}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
