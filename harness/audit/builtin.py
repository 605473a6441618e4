"""The built-in claim sets: ``claims=thompson`` and ``claims=epoch``, from the literature folder.

``thompson``: rows of Thompson et al.'s benchmark CSVs (``thompson2022/*.csv``, three sub-header
rows under the header) whose model torchvision or transformers builds, through the curated map
:data:`THOMPSON_MODELS` (name in the CSV -> builder, arguments, input, and why). Claimed are the
CSV's ``parameters``, ``flops`` (else ``multiadds``, as MACs), ``training_epochs`` x
``training_set_size``, its ``network_operations`` (the paper's training-compute estimate), the
training chip, count and time.

``epoch``: every row of Epoch AI's "All ML Systems" with training compute, hardware, quantity and
time; nothing is built, so only the implied utilisation is audited (Epoch's own chip table gives
the peaks, per chip, as Epoch counts them).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.audit.claims import Claim, InputSpec
from harness.errors import DataNotFoundError

THOMPSON_DIR = "thompson2022"
EPOCH_SYSTEMS = Path("epoch") / "epoch_all_ml_systems_2025-08.csv"
#: Header, then three sub-header rows (the CSVs' layout; analysis/constants.py says the same).
THOMPSON_SUBHEADER_ROWS = 3
#: A compute cell below this is a broken cell, not a training run (1 TFLOP is about a second on one
#: GPU); the 2025-08 Epoch export has fine-tune compute cells of 1, 2, 4 ... (mantissas cut off).
MIN_PLAUSIBLE_FLOP = 1e12

_BERT_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}


@dataclass(frozen=True)
class MappedModel:
    model: str
    args: dict
    input: InputSpec
    why: str


_IMG = InputSpec(image=(3, 224, 224))
#: (benchmark CSV, name as in the CSV) -> what to build. Only unambiguous published architectures.
THOMPSON_MODELS: dict[tuple[str, str], MappedModel] = {
    ("image-classification-on-imagenet", "ResNet-50"): MappedModel("torchvision:resnet50", {}, _IMG, "He et al. 2016, table 1"),
    ("image-classification-on-imagenet", "ResNet-152"): MappedModel("torchvision:resnet152", {}, _IMG, "He et al. 2016, table 1"),
    ("image-classification-on-imagenet", "VGG-19"): MappedModel("torchvision:vgg19", {}, _IMG, "Simonyan & Zisserman 2015, config E"),
    ("image-classification-on-imagenet", "Inception V3"): MappedModel(
        "torchvision:inception_v3", {"init_weights": False, "aux_logits": False}, InputSpec(image=(3, 299, 299)),
        "Szegedy et al. 2016, 299x299 input; auxiliary head off (not used at inference)"),
    ("image-classification-on-imagenet", "Inception v3"): MappedModel(
        "torchvision:inception_v3", {"init_weights": False, "aux_logits": False}, InputSpec(image=(3, 299, 299)),
        "Szegedy et al. 2016, 299x299 input; auxiliary head off (not used at inference)"),
    ("image-classification-on-imagenet", "AlexNet"): MappedModel(
        "torchvision:alexnet", {}, _IMG, "torchvision's AlexNet is Krizhevsky 2014's one-tower variant, not the two-GPU 2012 net"),
    ("image-classification-on-imagenet", "EfficientNet-B7"): MappedModel(
        "torchvision:efficientnet_b7", {}, InputSpec(image=(3, 600, 600)), "Tan & Le 2019, table 2: 600x600 input"),
    ("image-classification-on-imagenet", "RegNetY-32GF"): MappedModel("torchvision:regnet_y_32gf", {}, _IMG, "Radosavovic et al. 2020"),
    ("image-classification-on-imagenet", "WRN-50-2-bottleneck"): MappedModel(
        "torchvision:wide_resnet50_2", {}, _IMG, "Zagoruyko & Komodakis 2016, WRN-50-2-bottleneck"),
    ("image-classification-on-imagenet", "MobileNet V3-Large 1.0"): MappedModel(
        "torchvision:mobilenet_v3_large", {}, _IMG, "Howard et al. 2019, MobileNetV3-Large 1.0"),
    ("image-classification-on-imagenet", "MobileNetV2 (1.4)"): MappedModel(
        "torchvision:mobilenet_v2", {"width_mult": 1.4}, _IMG, "Sandler et al. 2018, width multiplier 1.4"),
    ("image-classification-on-imagenet", "ShuffleNet V2"): MappedModel(
        "torchvision:shufflenet_v2_x2_0", {}, _IMG, "Ma et al. 2018: the 591 MFLOP ImageNet row is ShuffleNet V2 2x"),
    ("question-answering-on-squad-1-1", "BERT (single model)"): MappedModel(
        "transformers:BertConfig", _BERT_LARGE, InputSpec(seq_len=384), "Devlin et al. 2019: BERT-Large, SQuAD at 384 tokens"),
    ("question-answering-on-squad-1-1", "SpanBERT (single model)"): MappedModel(
        "transformers:BertConfig", _BERT_LARGE, InputSpec(seq_len=384), "Joshi et al. 2020: the BERT-Large architecture"),
    ("named-entity-recognition-on-conll-2003", "BERT Large"): MappedModel(
        "transformers:BertConfig", _BERT_LARGE, InputSpec(seq_len=128), "Devlin et al. 2019: BERT-Large, 128-token inputs"),
}


def _float(text: Optional[str]) -> Optional[float]:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if value == value and value > 0 else None


def _literature_file(root: Path, relative: Path | str) -> Path:
    path = root / relative
    if not path.exists():
        raise DataNotFoundError(f"literature_root={root}: {relative} is not there (the folder holds thompson2022/ and "
                                "epoch/, e.g. ../shared/data/literature, or the analysis cache filled by "
                                "python -m analysis literature.download=true)")
    return path


def thompson_claims(root: Path) -> list[Claim]:
    folder = _literature_file(root, THOMPSON_DIR)
    claims: list[Claim] = []
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))[THOMPSON_SUBHEADER_ROWS:]
        for i, row in enumerate(rows):
            line = i + 2 + THOMPSON_SUBHEADER_ROWS
            name = (row.get("name") or "").strip()
            mapped = THOMPSON_MODELS.get((path.stem, name))
            if mapped is None:
                continue
            flops, macs = _float(row.get("flops")), _float(row.get("multiadds"))
            hardware, chips = row.get("training_gpu_model"), row.get("training_gpu_amount")
            if not (hardware or "").strip():
                hardware, chips = row.get("training_tpu_model"), row.get("training_tpu_amount")
            seconds = _float(row.get("training_time_total_sec"))
            claims.append(Claim(
                claim_id=f"{path.stem}:{line}:{name}", line=line,
                source=f"Thompson et al. 2022 data, {path.name} line {line}: {(row.get('title') or '').strip()}"[:300],
                model=mapped.model, model_args=dict(mapped.args), input=mapped.input,
                claimed_params=_float(row.get("parameters")),
                claimed_fwd_flops=flops if flops is not None else macs,
                claimed_fwd_unit=("FLOP" if flops is not None else "MAC") if (flops or macs) else None,
                epochs=_float(row.get("training_epochs")), dataset_size=_float(row.get("training_set_size")),
                claimed_train_flops=_float(row.get("network_operations")),
                hardware=(hardware or "").strip() or None, num_chips=_float(chips),
                train_hours=None if seconds is None else seconds / 3600.0,
                extra={"year": _float(row.get("year")), "benchmark": path.stem, "mapped_because": mapped.why}))
    return claims


#: Epoch's "Numerical format" names -> the peak table's dtypes, fastest first (several listed: the
#: fastest is taken, the benefit of the doubt again).
_EPOCH_FORMATS = (("BF16", "bf16"), ("FP16", "fp16"), ("TF32", "tf32"), ("FP32", "fp32"))


def _epoch_precision(text: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    listed = {t.strip().upper() for t in (text or "").split(",") if t.strip()}
    for name, dtype in _EPOCH_FORMATS:
        if name in listed:
            return dtype, None
    return None, (f"numerical format {text.strip()!r} has no peak column: the era rule chose the precision"
                  if listed else None)


def epoch_claims(root: Path) -> list[Claim]:
    path = _literature_file(root, EPOCH_SYSTEMS)
    claims: list[Claim] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.DictReader(f)):
            compute, chips, hours = (_float(row.get(c)) for c in ("Training compute (FLOP)", "Hardware quantity",
                                                                   "Training time (hours)"))
            hardware = [h.strip() for h in (row.get("Training hardware") or "").split(",") if h.strip()]
            if compute is None or chips is None or hours is None or not hardware:
                continue
            precision, note = _epoch_precision(row.get("Numerical format"))
            base = (row.get("Base model") or "").strip()
            finetune = _float(row.get("Finetune compute (FLOP)"))
            if finetune is not None and finetune < MIN_PLAUSIBLE_FLOP:
                note = "; ".join(filter(None, (note, f"Epoch's fine-tune compute cell reads {finetune:g}, not a FLOP count: "
                                                     "ignored")))
                finetune = None
            if base and finetune is not None:
                compute = finetune
                note = "; ".join(filter(None, (note, f"a fine-tune of {base}: its fine-tuning compute is audited")))
            elif base:
                note = "; ".join(filter(None, (note, f"a fine-tune of {base}: the training compute may include the base "
                                                     "model's while the hours are the fine-tuning's")))
            year = re.match(r"(\d{4})", (row.get("Publication date") or "").strip())
            method = (row.get("Training compute estimation method") or "").strip() or None
            extra = {"year": float(year.group(1)) if year else None,
                     "domain": (row.get("Domain") or "").split(",")[0].strip() or None,
                     "compute_estimation_method": method}
            if method and [m.strip() for m in method.split(",")] == ["Hardware"]:
                note = "; ".join(filter(None, (note, "Epoch estimated this compute from hardware x time alone: the "
                                                     "utilisation check is circular (it returns Epoch's assumed "
                                                     "utilisation)")))
            if len(hardware) > 1:
                extra["epoch_note"] = f"several chips listed ({', '.join(hardware)}): the first is used"
            if note:
                extra["epoch_note"] = "; ".join(filter(None, (extra.get("epoch_note"), note)))
            claims.append(Claim(claim_id=f"epoch:{(row.get('Model') or '').strip()}", line=i + 2,
                                source=(row.get("Link") or row.get("Reference") or "").strip() or None,
                                claimed_train_flops=compute, hardware=hardware[0], num_chips=chips,
                                train_hours=hours, precision=precision, extra=extra))
    return claims
