"""Fixed facts the analysis relies on: benchmark specs, pinned data sources, paper constants.

Everything here is data with a source, not behaviour. Each constant cites where it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass

# --- The paper's popular version ------------------------------------------------------------
# Thompson, Greenewald, Lee, Manso, "Deep Learning's Diminishing Returns", IEEE Spectrum,
# 24 Sep 2021 (the popular version of arXiv 2007.05558). Its cost and carbon extrapolations
# convert training compute with: 1 lb of CO2 per 3.4976e17 FLOP and 1 USD per 6.874e16 FLOP.
FLOP_PER_LB_CO2_SPECTRUM: float = 3.4976e17
FLOP_PER_USD_SPECTRUM: float = 6.874e16
# 1 lb = 0.45359237 kg exactly (International Yard and Pound Agreement, 1959).
KG_PER_LB: float = 0.45359237
# 1 kWh = 3.6e6 J (SI definition of the watt-hour).
J_PER_KWH: float = 3.6e6

# --- Names used in the outputs ---------------------------------------------------------------
BENCHMARKS: tuple[str, ...] = (
    "imagenet", "coco", "squad1.1", "conll2003", "wmt2014_en_fr", "wmt2014_en_de",
)
# Benchmarks a harness result.json may name (DESIGN.md result schema).
MEASURED_BENCHMARKS: tuple[str, ...] = ("imagenet", "coco", "squad1.1", "conll2003", "wmt2014_en_fr")
SOURCES: tuple[str, ...] = ("literature", "measured")
COMPUTE_MEASURES: tuple[str, ...] = (
    "forward_pass", "network_operations", "hardware_burden", "hardware_burden_consolidated",
)
# Human-readable axis labels, with units and the counting convention (1 multiply-add = 2 FLOPs).
COMPUTE_LABELS: dict[str, str] = {
    "forward_pass": "Forward-pass compute (FLOPs per sample, 1 MAC = 2 FLOPs)",
    "network_operations": "Training compute, network operations (FLOPs)",
    "hardware_burden": "Hardware burden (FLOPs = devices × peak FLOP/s × time)",
    "hardware_burden_consolidated": "Hardware burden, consolidated (FLOPs)",
}
COMPUTE_SHORT: dict[str, str] = {
    "forward_pass": "forward pass",
    "network_operations": "network operations",
    "hardware_burden": "hardware burden",
    "hardware_burden_consolidated": "hardware burden (consolidated)",
}
# Measures that are training compute: the dollar and CO2 conversions only apply to these
# (a forward pass is not a training cost).
TRAINING_MEASURES: tuple[str, ...] = (
    "network_operations", "hardware_burden", "hardware_burden_consolidated",
)
# Measures built from wall-clock time (hardware burden = devices x peak x time, Thompson et al.
# sec. 2): a run slowed by other jobs on its host inflates them, so contended runs are left out of
# these fits (and of joules per FLOP) unless fit.include_contended=true.
TIME_MEASURES: tuple[str, ...] = ("hardware_burden", "hardware_burden_consolidated")
# Training-compute measures with a cumulative value at every evaluation (curve.csv columns), on
# which the compute-efficient frontier is fitted (Kaplan et al. 2020, arXiv 2001.08361, fig. 2;
# Hoffmann et al. 2022, arXiv 2203.15556, sec. 3.1: the lowest loss reached at each compute).
FRONTIER_MEASURES: dict[str, str] = {
    "network_operations": "train_flops",
    "hardware_burden": "hardware_burden_flops",
}

# Theory's lower bound on k (compute grows at least as error^-4): Thompson, Greenewald, Lee and
# Manso, arXiv 2007.05558, sec. 2 ("Deep learning's computational requirements in theory"): for
# an over-parameterised model the parameters grow with the data points, so compute grows at least
# as (data points)^2; with error falling as (data points)^-1/2 at best, compute grows at least as
# error^-4.
THEORY_K_MIN: float = 4.0
# Iso-FLOP budgets of the compute-optimal allocation (Hoffmann et al. 2022, arXiv 2203.15556,
# sec. 3.2): final points whose training compute lies within this factor of the budget's smallest
# share a budget. The scaling grids (conf/harness/experiment/scaling_*.yaml) step model compute
# and training budget by 2x each, so one grid anti-diagonal is one budget; sqrt(2) is half that
# step on a log scale, wide enough for a rounded channel count (~+-10%) and narrow enough never
# to join two diagonals.
ALLOCATION_BUDGET_RATIO: float = 2.0 ** 0.5

# --- Datasets -------------------------------------------------------------------------------
# The dataset each literature benchmark is evaluated on, as the harness names it in result.json
# ``dataset`` (harness data registry: ``data.name``). A measured run on any other dataset (e.g.
# fashion_mnist or cifar10 for imagenet) is a proxy: fitted on its own, never with the literature.
BENCHMARK_DATASET: dict[str, str] = {
    "imagenet": "imagenet",
    "coco": "coco",
    "squad1.1": "squad1.1",
    "conll2003": "conll2003",
    "wmt2014_en_fr": "wmt2014_en_fr",
    "wmt2014_en_de": "wmt2014_en_de",
}
# What keeps measured runs apart: one fit per (benchmark, dataset, eval set, hardware). A proxy
# dataset is never pooled with the benchmark's own; a test subset never with the full test set;
# runs from different hardware (device, CPU threads, precision: analysis.measured.hardware_label)
# never share a fit, since hardware burden, J/FLOP and FLOP/s belong to one machine.
GROUP_KEY: tuple[str, ...] = ("benchmark", "dataset", "eval_set", "hardware")
# result.json config keys that do not change what is trained or evaluated (the lead's contract
# for issue 7): runs that differ only in these are replicates of one configuration. A key listed
# here also covers everything below it (``measure`` covers ``measure.codecarbon``).
# The speed settings of issue 16 are here too: compiling the training step, building batches ahead
# on a thread, folding BatchNorm for evaluation and periodic checkpoints change how fast the same
# steps run (and, for compile and folding, float rounding, as another device does), not which model
# is trained on which batches: a compiled run is a replicate of its eager one, not a new point.
NON_IDENTITY_CONFIG_KEYS: tuple[str, ...] = (
    "seed", "run_name", "measure", "device", "data.root", "data.download", "trainer.progress",
    "trainer.compile", "trainer.compile_backend", "trainer.compile_mode", "trainer.prefetch_batches",
    "trainer.checkpoint_every_s", "workload.fold_batchnorm",
)

# --- Energy methods (DESIGN.md result schema, energy_*_method) ---------------------------------
# codecarbon without a hardware counter models power from a TDP table (or a per-thread default)
# and RAM from a per-DIMM constant: an estimate, not a measurement.
ESTIMATED_ENERGY_METHODS: tuple[str, ...] = ("codecarbon_estimate",)
# Hardware energy counters or sampled board power: measurements.
MEASURED_ENERGY_METHODS: tuple[str, ...] = ("rapl", "nvml_counter", "nvml_power_sampling")
ENERGY_COMPONENTS: tuple[str, ...] = ("cpu", "gpu", "ram")


@dataclass(frozen=True)
class BenchmarkSpec:
    """One Thompson et al. benchmark: its CSV, its metric column, and how error is defined."""

    name: str
    title: str
    filename: str
    metric_column: str
    metric_label: str
    sha256: str


# The CSVs of Thompson et al. (2022), repository MIT-FutureTech/TheComputationalLimitsOfDeepLearning
# at commit 62f1e4d2, folder data/. sha256 from ../shared/data/SHA256SUMS.
# Error, in the paper's convention: 1 - metric/100 (metric in percent). SQuAD uses exact match,
# not F1 (the paper's notebook question-answering-on-squad-1-1.ipynb fits EM).
BENCHMARK_SPECS: dict[str, BenchmarkSpec] = {
    "imagenet": BenchmarkSpec(
        "imagenet", "ImageNet", "image-classification-on-imagenet.csv", "(TOP 1 score)",
        "Top-1 error", "e83c4471a66ee5831454e58b4eedfba0ffdb4a5aca069f17676611fd442ccdee"),
    "coco": BenchmarkSpec(
        "coco", "MS COCO", "object-detection-on-coco.csv", "(BOX AP)",
        "Error (1 - box AP)", "66d7306de0d794531e1758753d1fc120899029d1594273f73b01c84c00a48e93"),
    "squad1.1": BenchmarkSpec(
        "squad1.1", "SQuAD 1.1", "question-answering-on-squad-1-1.csv", "(EM score)",
        "Error (1 - exact match)", "f66a72db48cc8b44c50a24be2db954079a2264075d4ca11b6856eea45602b2c2"),
    "conll2003": BenchmarkSpec(
        "conll2003", "CoNLL-2003", "named-entity-recognition-on-conll-2003.csv", "(F1 score)",
        "Error (1 - F1)", "ce2f736323503beaf6415e5979ddae5dc2008553325af1163cbc80654fdc120b"),
    "wmt2014_en_fr": BenchmarkSpec(
        "wmt2014_en_fr", "WMT 2014 En-Fr", "machine-translation-on-wmt2014-en-fr.csv", "(BLEU)",
        "Error (1 - BLEU/100)", "0947f444e15615f32dccb3b90ede7daedc37a00c114ea99add937dbc1a691421"),
    "wmt2014_en_de": BenchmarkSpec(
        "wmt2014_en_de", "WMT 2014 En-De", "machine-translation-on-wmt2014-en-de.csv", "(BLEU)",
        "Error (1 - BLEU/100)", "8da004496b756aef85e2a9624058b9b4dc6004d959edc6377147e803188e246a"),
}
THOMPSON_SUBDIR = "thompson2022"
THOMPSON_URL = (
    "https://raw.githubusercontent.com/MIT-FutureTech/TheComputationalLimitsOfDeepLearning/"
    "62f1e4d22762ede9503b7a10ac3027e499e42ab1/data/{filename}"
)
# The Thompson CSVs carry three extra header rows (group names, sub-names, a blank row) under
# the real header; the data start on file line 5 (../shared/data/README.md).
THOMPSON_HEADER_ROWS_SKIPPED = 3
THOMPSON_FIRST_DATA_LINE = 5

# Epoch AI "All ML Systems" snapshot (CC-BY 4.0), repository epoch-research/training-cost-trends
# at commit 263c40a1, file data/All ML Systems - full view.csv; sha256 from SHA256SUMS.
EPOCH_SUBDIR = "epoch"
EPOCH_FILENAME = "epoch_all_ml_systems_2025-08.csv"
EPOCH_URL = (
    "https://raw.githubusercontent.com/epoch-research/training-cost-trends/"
    "263c40a159307e917213d1dc433c617e47d55bfe/data/All%20ML%20Systems%20-%20full%20view.csv"
)
EPOCH_SHA256 = "74509130a942f476053447d26cd9a3805a03d48b8feffef714826c5e340c9ec2"

# --- Published fit results, for the reproduction check ------------------------------------------
# OLS summaries printed in the paper's notebooks (MIT-FutureTech/TheComputationalLimitsOfDeepLearning
# @ 62f1e4d2, notebooks/*.ipynb). The SQuAD and CoNLL notebooks regress log10(1/error), which is
# -log10(error): the slope's sign is flipped here, and |b|, its s.e., R^2 and n are unchanged.
PUBLISHED_POLYNOMIAL: dict[tuple[str, str], dict[str, float]] = {
    ("imagenet", "forward_pass"): {"b": -0.0821, "b_se": 0.006, "r2": 0.606, "n": 110},
    ("imagenet", "network_operations"): {"b": -0.0836, "b_se": 0.006, "r2": 0.720, "n": 77},
    ("imagenet", "hardware_burden"): {"b": -0.0933, "b_se": 0.009, "r2": 0.766, "n": 36},
    ("squad1.1", "hardware_burden"): {"b": -0.0956, "b_se": 0.012, "r2": 0.872, "n": 12},
    ("conll2003", "hardware_burden"): {"b": -0.0269, "b_se": 0.010, "r2": 0.417, "n": 12},
}

# --- Plausibility of measured runs (result.json) -----------------------------------------------
# A result.json whose numbers lie outside these bounds was not written by a real run (or was
# edited): it is an error naming file and key (strict=true) or a skipped file (strict=false).
# The ceilings sit 3x to 100x above the largest value on record, so they catch corruption
# (1e300 FLOPs, an error of 1e-300) without second-guessing real runs.

# Training compute: Epoch AI's "All ML Systems" snapshot (EPOCH_FILENAME, 2025-08) tops out at
# 4.64e26 FLOP (Grok-3, Feb 2025); 1e28 is over 20x that. A forward pass of one sample cannot cost
# more than the largest training run, so the same ceiling bounds fwd_flops_per_sample. Hardware
# burden = training compute / utilisation: the largest run at 5% utilisation is 9.3e27 < 1e28.
MAX_PLAUSIBLE_FLOPS: float = 1e28
# A FLOP count is a count of operations: a positive count is at least one.
MIN_PLAUSIBLE_FLOPS: float = 1.0
# Peak FLOP/s of one device: Epoch AI's chip dataset (epoch_chip_dataset.csv) tops out at
# 1.53e16 FLOP/s (NVIDIA GB300, FP4); 1e17 is over 6x that.
MAX_PLAUSIBLE_PEAK_FLOPS_PER_S: float = 1e17
# Devices in one run: the most in Epoch AI's snapshot is 100,000 (Grok-3); 1e7 is 100x that.
MAX_PLAUSIBLE_NUM_DEVICES: float = 1e7
# Training time: the longest in Epoch AI's snapshot is 9,022.8 h = 3.2e7 s (DeepMind's Diamond);
# 1e8 s (3.2 years) is 3x that.
MAX_PLAUSIBLE_TRAIN_TIME_S: float = 1e8
# Training energy: the highest power draw in Epoch AI's snapshot (1.37e8 W, Grok-3) for the
# longest training time (3.2e7 s) is 4.5e15 J; 1e17 J is over 20x that.
MAX_PLAUSIBLE_ENERGY_J: float = 1e17
# Parameters: the most in Epoch AI's snapshot is 1e14 (Persia); 1e16 is 100x that.
MAX_PLAUSIBLE_NUM_PARAMS: float = 1e16
# Error floor when the test-set size does not bound it. Below 1e-6 an error needs a test set of
# over a million samples with at most one mistake; the benchmarks' test sets are far smaller
# (ImageNet val 50,000 images; COCO val2017 5,000 images; SQuAD 1.1 dev 10,570 questions;
# CoNLL-2003 test 3,453 sentences; WMT14 newstest2014 3,003 sentences), and the best published
# errors in the Thompson et al. CSVs are above 5e-2 (CoNLL-2003: 0.054).
MIN_PLAUSIBLE_ERROR: float = 1e-6
# Benchmarks whose error is a fraction of evaluated samples (1 - top-1: one image is right or
# wrong), so a non-zero error over eval_samples samples is at least 1/eval_samples. Box AP,
# F1 and BLEU are not fractions of samples, and SQuAD's eval_samples may count context windows
# rather than questions: those use MIN_PLAUSIBLE_ERROR only.
COUNT_ERROR_BENCHMARKS: tuple[str, ...] = ("imagenet",)
# Relative slack on 1/eval_samples for float rounding of the stored error.
COUNT_ERROR_RTOL: float = 1e-9
# A result.json is one flat object with the resolved config: a few kB (the one in results/runs
# is 8 kB). Anything over 16 MiB is not one, and is not read into memory.
MAX_RESULT_JSON_BYTES: int = 16 * 1024 * 1024

# --- Config ranges (python -m analysis) -----------------------------------------------------------
# figures.dpi: PNGs are for report.html (print quality is the SVG or PDF, which are vector).
# matplotlib's FreeType text rendering fails outright at 1 dpi ("invalid ppem value"), and below
# 50 dpi the 8-pt legend text is under 6 px high; 600 dpi is beyond any screen and keeps the
# largest figure (12.8 x 10 in, two panel columns and rows) under 50 megapixels.
MIN_FIGURE_DPI: int = 50
MAX_FIGURE_DPI: int = 600
# fit.bootstrap_resamples: Efron and Tibshirani (An Introduction to the Bootstrap, 1993, sec.
# 19.3) suggest about 1,000 resamples for percentile intervals; 20,000 leaves no visible Monte
# Carlo error, while each (resamples x points) float array stays at 33 MB for the largest
# literature benchmark (208 ImageNet rows), a few hundred MB in all for the batched quantile fit.
MAX_BOOTSTRAP_RESAMPLES: int = 20_000
