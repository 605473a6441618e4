"""The consolidated hardware burden: measured where present, else predicted from network ops.

Thompson et al. consolidate hardware burden by predicting it, for papers that report only
network operations, from a log10-log10 OLS of hardware burden on network operations fitted on
the rows that report both. The prediction is fitted per benchmark; a benchmark with fewer than
``min_points`` such rows (MS COCO has none) uses the fit pooled over all benchmarks of the same
source, and says so. Measured runs are consolidated per (benchmark, dataset, eval set) group,
with no pooled fallback (:mod:`analysis.points`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import pandas as pd
import statsmodels.api as sm


_SCOPES = {"benchmark": "this benchmark", "pooled": "pooled over benchmarks",
           "group": "this dataset and eval set only"}


@dataclass
class ConsolidationFit:
    """log10(hardware_burden) = a + b * log10(network_operations)."""

    a: float
    b: float
    r2: float
    n: int
    scope: str  # "benchmark", "pooled" or "group" (a measured dataset and eval set)
    num_predicted: int = 0  # rows of the benchmark that received a prediction

    def predict(self, network_operations: pd.Series) -> pd.Series:
        return 10.0 ** (self.a + self.b * np.log10(network_operations))

    def describe(self) -> str:
        return (f"{self.num_predicted} row(s) predicted by log10(HB) = {self.a:.3f} + {self.b:.3f} "
                f"log10(NO), R2={self.r2:.3f}, fitted on n={self.n} rows reporting both "
                f"({_SCOPES.get(self.scope, self.scope)})")


def _fit_pairs(df: pd.DataFrame, scope: str, min_points: int) -> Optional[ConsolidationFit]:
    both = df.dropna(subset=["network_operations", "hardware_burden"])
    if len(both) < min_points or np.log10(both["network_operations"]).std() == 0:
        return None
    x = np.log10(both["network_operations"].to_numpy(float))
    y = np.log10(both["hardware_burden"].to_numpy(float))
    res = sm.OLS(y, sm.add_constant(x)).fit()
    return ConsolidationFit(float(res.params[0]), float(res.params[1]), float(res.rsquared),
                            len(both), scope)


def consolidate(points: pd.DataFrame, min_points: int, by: str = "benchmark",
                pooled_fallback: bool = True) -> tuple[pd.DataFrame, dict[str, Optional[ConsolidationFit]]]:
    """Add ``hardware_burden_consolidated`` to every row; return the fit used per ``by`` value.

    Measured runs pass their (benchmark, dataset, eval set) group as ``by`` and no pooled
    fallback, so one dataset's runs never borrow another's relation.
    """
    points = points.copy()
    points["hardware_burden_consolidated"] = points["hardware_burden"]
    pooled = (_fit_pairs(points, "pooled", min_points)
              if pooled_fallback and not points.empty else None)
    used: dict[str, Optional[ConsolidationFit]] = {}
    for bench, idx in points.groupby(by, sort=False).groups.items():
        sub = points.loc[idx]
        fit = _fit_pairs(sub, "benchmark" if by == "benchmark" else "group", min_points) or pooled
        if fit is None:
            used[bench] = None
            continue
        need = sub["hardware_burden"].isna() & sub["network_operations"].notna()
        points.loc[need[need].index, "hardware_burden_consolidated"] = fit.predict(
            sub.loc[need, "network_operations"])
        used[bench] = replace(fit, num_predicted=int(need.sum()))
    return points, used
