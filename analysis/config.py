"""Typed config for ``python -m analysis``: dataclasses registered in Hydra's ConfigStore.

``conf/analysis/analysis.yaml`` lists ``analysis_schema`` first in its defaults, so Hydra composes
the YAML onto these dataclasses: an unknown key or a wrong type fails when the config is
composed, before anything runs. Checks Hydra cannot express (ranges, benchmark names) live in
:func:`validate`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore

from analysis.constants import BENCHMARKS, MAX_BOOTSTRAP_RESAMPLES, MAX_FIGURE_DPI, MIN_FIGURE_DPI
from analysis.errors import AnalysisError


@dataclass
class LiteratureConfig:
    """Where the published data come from."""

    # Folder holding thompson2022/ (and optionally epoch/), e.g. ../shared/data/literature.
    root: Optional[str] = None
    # Where downloaded files are kept (and looked for when root is not given).
    cache_dir: str = "results/cache/literature"
    # The project's shared copy, tried after the cache and before a download when root is not
    # given (conf/analysis/analysis.yaml: $COMPUTELIMITS_SHARED_DATA/literature, else
    # ../shared/data/literature), so `python -m analysis results.root=results/reference` works
    # offline in a checkout beside shared/. null: never.
    shared_root: Optional[str] = None
    # Downloading from the pinned URLs happens only when this is true.
    download: bool = False
    # Draw the Epoch AI context figure when its CSV is available.
    epoch: bool = True


@dataclass
class ResultsConfig:
    """Measured runs: every result.json under root (recursive). null skips them."""

    root: Optional[str] = "results"


@dataclass
class FitConfig:
    """Regression settings (the paper's specification)."""

    # Fewer points than this and a fit is reported as "too few points" instead of estimated.
    min_points: int = 3
    # Quantile for the frontier fit; the model_form is named quantile_q{q}.
    quantile: float = 0.1
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    ci_level: float = 0.95
    # Runs whose result.json says contended: true (the host was busy) enter the time- and
    # energy-based fits (hardware_burden, hardware_burden_consolidated, J/FLOP) only when true.
    # Their FLOP counts and errors are fitted either way.
    include_contended: bool = False


def _default_targets() -> Dict[str, List[float]]:
    # Target errors for the extrapolation table, after the paper's "implications" targets
    # (arXiv 2007.05558, extrapolation table): ImageNet 5% and 1%; the others two steps below
    # today's best. Today's best (the lowest error in the data) is always added.
    return {
        "imagenet": [0.05, 0.01],
        "coco": [0.30, 0.10],
        "squad1.1": [0.02, 0.01],
        "conll2003": [0.02, 0.01],
        "wmt2014_en_fr": [0.30, 0.10],
        "wmt2014_en_de": [0.30, 0.10],
    }


@dataclass
class ExtrapolationConfig:
    """Targets and the second, measured-energy conversion of compute to CO2 and dollars."""

    targets: Dict[str, List[float]] = field(default_factory=_default_targets)
    # Grid carbon intensity: world average 475 gCO2/kWh (IEA, Global Energy & CO2 Status
    # Report 2019, figure for 2018). Override with your grid's figure.
    carbon_intensity_g_per_kwh: float = 475.0
    # Electricity price: about 0.13 USD/kWh, the US average retail price across sectors in 2023
    # (US EIA, Electric Power Monthly, table 5.3). Override with your tariff.
    price_usd_per_kwh: float = 0.13


def _default_families() -> Dict[str, List[str]]:
    # torchvision architecture names per family (torchvision.models.list_models()). Counting a
    # cold cache costs CPU seconds per model (EfficientNet-B7 runs at 600 px), so the default
    # keeps the families the paper and the issue name; add others from the CLI, e.g.
    # '+within_family.families.ConvNeXt=[convnext_tiny,convnext_small,convnext_base]'.
    return {
        "ResNet": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
        "EfficientNet": [f"efficientnet_b{i}" for i in range(8)],
        "RegNetY": ["regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf",
                    "regnet_y_8gf", "regnet_y_16gf"],
    }


@dataclass
class WithinFamilyConfig:
    """Within-family scaling on torchvision architectures (fvcore counts, acc@1 metadata)."""

    enabled: bool = True
    families: Dict[str, List[str]] = field(default_factory=_default_families)
    # Restrict to these family names (empty: all), e.g. within_family.only=[ResNet].
    only: List[str] = field(default_factory=list)
    # Which weights' acc@1 and evaluation resolution to use. IMAGENET1K_V1 is the original
    # paper recipe for these families; a model without it falls back to its DEFAULT weights.
    weights: str = "IMAGENET1K_V1"


@dataclass
class FigureConfig:
    formats: List[str] = field(default_factory=lambda: ["png", "svg"])
    dpi: int = 130


@dataclass
class AnalysisConfig:
    """Root config of ``python -m analysis``."""

    literature: LiteratureConfig = field(default_factory=LiteratureConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    out_dir: str = "results/analysis"
    # Cache for expensive, reproducible work (fvcore counts of torchvision families).
    cache_dir: str = "results/cache"
    fit: FitConfig = field(default_factory=FitConfig)
    extrapolation: ExtrapolationConfig = field(default_factory=ExtrapolationConfig)
    within_family: WithinFamilyConfig = field(default_factory=WithinFamilyConfig)
    figures: FigureConfig = field(default_factory=FigureConfig)
    # Print the summary table to the terminal.
    summary: bool = True
    # true: the first bad result.json or curve.csv under results.root (unreadable, truncated,
    # binary, NaN or implausible values, missing keys) stops the analysis with one line naming
    # the file and key. false: each bad file is skipped with one warning line, counted in the
    # summary and the report, and the good runs are fitted.
    strict: bool = True


def register_configs() -> None:
    """Put the schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="analysis_schema", node=AnalysisConfig)


def _finite(name: str, value: float, low: float, what: str) -> None:
    if not (math.isfinite(value) and value >= low):
        raise AnalysisError(f"{name}={value}: must be a finite number {what}")


def validate(cfg: Any) -> None:
    """Range and name checks that types cannot express; one clear line per problem.

    Runs before any input is read, so a bad number fails in one line before any work.
    """
    fit = cfg.fit
    if fit.min_points < 3:
        raise AnalysisError(f"fit.min_points={fit.min_points}: must be >= 3 (two coefficients "
                            "and a standard error need at least three points)")
    if not 0.0 < fit.quantile < 1.0:
        raise AnalysisError(f"fit.quantile={fit.quantile}: must be strictly between 0 and 1")
    if not 0.0 < fit.ci_level < 1.0:
        raise AnalysisError(f"fit.ci_level={fit.ci_level}: must be strictly between 0 and 1")
    if not 0 <= fit.bootstrap_resamples <= MAX_BOOTSTRAP_RESAMPLES:
        raise AnalysisError(f"fit.bootstrap_resamples={fit.bootstrap_resamples}: must be between 0 "
                            f"(no intervals) and {MAX_BOOTSTRAP_RESAMPLES} "
                            "(MAX_BOOTSTRAP_RESAMPLES in analysis/constants.py)")
    if fit.bootstrap_seed < 0:
        raise AnalysisError(f"fit.bootstrap_seed={fit.bootstrap_seed}: must be >= 0 (numpy seeds "
                            "are non-negative)")
    ext = cfg.extrapolation
    for name, targets in ext.targets.items():
        if name not in BENCHMARKS:
            raise AnalysisError(f"extrapolation.targets.{name}: unknown benchmark; valid: "
                                f"{', '.join(BENCHMARKS)}")
        for t in targets:
            if not 0.0 < float(t) < 1.0:
                raise AnalysisError(f"extrapolation.targets.{name}: target error {t} must be a "
                                    "fraction strictly between 0 and 1")
    _finite("extrapolation.carbon_intensity_g_per_kwh", ext.carbon_intensity_g_per_kwh, 0.0, ">= 0")
    _finite("extrapolation.price_usd_per_kwh", ext.price_usd_per_kwh, 0.0, ">= 0")
    unknown = [f for f in cfg.within_family.only if f not in cfg.within_family.families]
    if unknown:
        raise AnalysisError(f"within_family.only: unknown family {unknown}; valid: "
                            f"{', '.join(cfg.within_family.families)}")
    for family, models in cfg.within_family.families.items():
        if not models:
            raise AnalysisError(f"within_family.families.{family}: empty; list torchvision model "
                                "names, e.g. [resnet18, resnet50]")
    for f in cfg.figures.formats:
        if f not in ("png", "svg", "pdf"):
            raise AnalysisError(f"figures.formats: {f!r} is not one of png, svg, pdf")
    if "png" not in cfg.figures.formats:
        raise AnalysisError("figures.formats must include png (report.html embeds the PNGs)")
    if not MIN_FIGURE_DPI <= cfg.figures.dpi <= MAX_FIGURE_DPI:
        raise AnalysisError(f"figures.dpi={cfg.figures.dpi}: must be between {MIN_FIGURE_DPI} and "
                            f"{MAX_FIGURE_DPI} (MIN_FIGURE_DPI, MAX_FIGURE_DPI in "
                            "analysis/constants.py)")
    for key in ("out_dir", "cache_dir"):
        if not str(cfg[key]).strip():
            raise AnalysisError(f"{key} is empty; give a folder")
