"""Object detection: the MS COCO row of the literature (box AP), on any COCO-format data.

Data (:mod:`harness.workloads.detection_data`): COCO-format annotation files and image folders
under ``data.root`` (``data=coco``: MS COCO 2017), or the generated Fashion-MNIST scenes
(``data=fashion_scenes``, the default), which are written in the same format and read by the same
reader. Images keep their own size: a batch holds images of one padded shape (sides rounded up
to ``workload.pad_multiple``; the generated canvases are 96 or 128 px a side, so their batches
have no padding), normalised by the training images' per-channel mean and standard deviation.
Training flips each image horizontally with probability 1/2 (``workload.hflip``).

Model (:mod:`models.fcos`): torchvision's FCOS. Its input transform
(``GeneralizedRCNNTransform``), which would resize every image so its shorter side is 800 px (a
96-128 px canvas would be upscaled 6-8x, 40-70x the FLOPs) and normalise with ImageNet's
statistics, is bypassed: the network sees the images at their size, normalised with the data's
own statistics. torchvision's ``FCOS.compute_loss`` (focal loss, GIoU, centre-ness) and
``FCOS.postprocess_detections`` (score threshold, top-k, decoding, class-wise NMS, clipping to
each image's own size) do the rest.

FLOPs: the runner counts ``model(images)``, the network (backbone, FPN, head) on each batch as run;
anchor generation, target assignment, the losses and the post-processing (NMS) are not counted
(:data:`FLOPS_SCOPE`, in ``metric_details``). Evaluation counts its forward passes per batch shape.

Metric: pycocotools' ``COCOeval`` (iouType ``bbox``) on the validation images: box AP@[.50:.95]
is the primary metric, and all 12 COCO statistics are in ``metrics`` (those COCOeval cannot
define, -1 for an area range with no object, are left out there and null in
``metric_details.coco_stats``). The paper's error is 1 - AP. The run folder gets
``detections.json`` (COCO results format) and ``ground_truth.json`` (the evaluated images and
their annotations), so ``COCOeval(COCO('ground_truth.json'), ...loadRes('detections.json'))``
gives the same numbers.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from harness.device import to_device
from harness.errors import DataNotFoundError, UserError
from harness.measure.batch_flops import ShapeCounts
from harness.workload import Evaluation, Workload, WorkloadConfig, data_root, register_workload
from harness.workloads.detection_data import (
    CocoSplit,
    DetectionBatch,
    DetectionDataConfig,
    area_counts,
    coco_split,
    generated_scenes,
    iter_eval_index,
    iter_train_index,
    load_coco_json,
    shape_buckets,
)
from harness.workloads.text import unwrap

log = logging.getLogger(__name__)

#: The 12 statistics of ``COCOeval.summarize()`` for bbox, in its order (pycocotools cocoeval.py).
STAT_NAMES = ("box_ap", "box_ap50", "box_ap75", "box_ap_small", "box_ap_medium", "box_ap_large",
              "box_ar1", "box_ar10", "box_ar100", "box_ar_small", "box_ar_medium", "box_ar_large")
#: What the FLOP counts cover (result.json ``metric_details.flops_scope``).
FLOPS_SCOPE = ("counted: the network's forward (backbone, FPN, FCOS head: convolutions, norms, activations, "
               "additions) on every batch as run, training = 3 x forward; not counted: anchor-point generation, "
               "target assignment (centre sampling, per-level size ranges), the losses (focal, GIoU, centre-ness) "
               "and their backward, and in evaluation the post-processing (score threshold, top-k, box decoding, "
               "NMS)")
EVAL_FLOPS_METHOD = ("fvcore (harness.measure.flops.count_forward_macs, 2 FLOPs per multiply-add) of the network's "
                     "forward on one image of each padded shape, times the images evaluated at that shape (eval mode: "
                     "no op mixes a batch's images); post-processing and NMS not counted")
#: Images used to estimate the per-channel normalisation statistics.
STATS_IMAGES = 512


@dataclass
class DetectionConfig(WorkloadConfig):
    """``workload.*`` of ``workload=detection``."""

    name: str = "detection"
    # generated scenes are kept here, by a hash of their parameters; null = generated in memory every run
    cache_dir: Optional[str] = "results/cache/detection"
    pad_multiple: int = 32  # batch sides are padded to a multiple of this (the FPN's coarsest stride)
    hflip: bool = True  # random horizontal flips of training images


class DetectionData:
    """Training and validation splits (COCO format), their shape buckets and the batching."""

    def __init__(self, cfg: Any, device: torch.device) -> None:
        wcfg, dcfg = cfg.workload, cfg.data
        self.device = device
        self.name = str(dcfg.name)
        root = data_root(dcfg, "the COCO folder (data=coco) or the Fashion-MNIST folder the scenes are made from "
                               "(data=fashion_scenes)", must_exist=False)
        if wcfg.pad_multiple < 1:
            raise UserError(f"workload.pad_multiple={wcfg.pad_multiple} is invalid: it must be >= 1")
        self.pad_multiple, self.hflip = int(wcfg.pad_multiple), bool(wcfg.hflip)
        details: dict[str, Any] = {}
        pixels: dict[str, Optional[list[np.ndarray]]] = {"train": None, "val": None}
        if dcfg.generate:
            cache = None if wcfg.cache_dir is None else Path(str(wcfg.cache_dir)).expanduser()
            scenes = generated_scenes(dcfg, cache)
            details["generated"] = dict(items="Fashion-MNIST", root=str(root.resolve()), cache=str(scenes.folder),
                                        cache_hit=scenes.cache_hit, generation_s=scenes.seconds)
            if scenes.folder is None:
                raw = {s: scenes.memory[s][0] for s in ("train", "val")}
                pixels = {s: scenes.memory[s][1] for s in ("train", "val")}
                paths = {s: Path(f"<in memory: {s} scenes>") for s in ("train", "val")}
                dirs: dict[str, Optional[Path]] = {"train": None, "val": None}
                self.source = f"generated in memory from {root.resolve()}"
            else:
                paths = {s: scenes.folder / "annotations" / f"instances_{s}.json" for s in ("train", "val")}
                dirs = {s: scenes.folder / s for s in ("train", "val")}
                raw = {s: load_coco_json(paths[s]) for s in ("train", "val")}
                self.source = str(scenes.folder)
        else:
            if not root.is_dir():
                raise DataNotFoundError(f"data.root={dcfg.root}: no such folder (it should hold {dcfg.train_annotations}, "
                                        f"{dcfg.val_annotations} and the image folders)")
            paths = {"train": root / dcfg.train_annotations, "val": root / dcfg.val_annotations}
            dirs = {"train": root / dcfg.train_images, "val": root / dcfg.val_images}
            raw = {s: load_coco_json(paths[s]) for s in ("train", "val")}
            self.source = str(root.resolve())
        cats = sorted(c["id"] for c in raw["train"]["categories"])
        if sorted(c["id"] for c in raw["val"]["categories"]) != cats:
            raise UserError(f"{paths['val']}: its categories differ from those of {paths['train']}")
        self.category_ids = cats  # model class k is COCO category self.category_ids[k]
        self.category_names = {c["id"]: c.get("name", str(c["id"])) for c in raw["train"]["categories"]}
        index = {c: k for k, c in enumerate(cats)}
        self.train = coco_split(raw["train"], paths["train"], dirs["train"], index, dcfg.train_subset, pixels["train"])
        self.val = coco_split(raw["val"], paths["val"], dirs["val"], index, dcfg.eval_subset, pixels["val"])
        if not self.val.dataset["annotations"]:
            raise UserError(f"{paths['val']}: the evaluated images have no annotations: AP is undefined")
        if dcfg.preload:
            for split in (self.train, self.val):
                if split.pixels is None:
                    split.pixels = [split.image(i) for i in range(len(split))]
        self.num_train, self.num_eval = len(self.train), len(self.val)
        self.train_buckets = shape_buckets(self.train, self.pad_multiple)
        self.val_buckets = shape_buckets(self.val, self.pad_multiple)
        self.mean, self.std = self._channel_stats()
        self._mean_t = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        self._std_t = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        details.update(
            train={"annotations": str(paths["train"]), "images": len(self.train),
                   "objects": sum(len(b) for b in self.train.boxes), "crowd_skipped": self.train.skipped_crowd,
                   "degenerate_skipped": self.train.skipped_empty, "shapes": {f"{h}x{w}": len(v) for (h, w), v in
                                                                               self.train_buckets.items()}},
            val={"annotations": str(paths["val"]), "images": len(self.val),
                 "objects": len(self.val.dataset["annotations"]), "objects_by_area": area_counts(self.val.dataset)},
            categories=[self.category_names[c] for c in cats],
            normalisation={"mean": self.mean, "std": self.std,
                           "method": f"per-channel mean and std of the first {STATS_IMAGES} training images (0-1 scale)"},
        )
        self.details = details

    def _channel_stats(self) -> tuple[list[float], list[float]]:
        n = min(STATS_IMAGES, len(self.train))
        total, total_sq, count = np.zeros(3), np.zeros(3), 0
        for i in range(n):
            px = self.train.image(i).reshape(-1, 3).astype(np.float64) / 255.0
            total += px.sum(0)
            total_sq += (px ** 2).sum(0)
            count += len(px)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
        return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]

    def make_batch(self, split: CocoSplit, index: list[int], rng: Optional[torch.Generator] = None) -> DetectionBatch:
        """Images ``index`` of ``split`` padded (bottom, right) to one shape and normalised; with ``rng``,
        each flipped horizontally with probability 1/2 when ``hflip`` is on (training)."""
        sizes = [(int(split.images[i]["height"]), int(split.images[i]["width"])) for i in index]
        h = max(pad_to_multiple(s[0], self.pad_multiple) for s in sizes)
        w = max(pad_to_multiple(s[1], self.pad_multiple) for s in sizes)
        canvas = torch.zeros(len(index), h, w, 3, dtype=torch.uint8)
        flips = (torch.rand(len(index), generator=rng) < 0.5).tolist() if rng is not None and self.hflip \
            else [False] * len(index)
        targets = []
        for row, (i, (ih, iw), flip) in enumerate(zip(index, sizes, flips)):
            px = split.image(i)
            if px.shape[:2] != (ih, iw):
                raise UserError(f"{split.image_dir}/{split.images[i]['file_name']}: the image is {px.shape[1]} x "
                                f"{px.shape[0]} px but {split.path} says {iw} x {ih}")
            boxes = split.boxes[i]
            if flip:
                px = px[:, ::-1]
                boxes = torch.stack([iw - boxes[:, 2], boxes[:, 1], iw - boxes[:, 0], boxes[:, 3]], dim=1)
            canvas[row, :ih, :iw] = torch.from_numpy(np.ascontiguousarray(px))
            targets.append({"boxes": to_device(boxes, self.device), "labels": to_device(split.labels[i], self.device)})
        images = to_device(canvas, self.device).permute(0, 3, 1, 2).float().div_(255.0)
        images = ((images - self._mean_t) / self._std_t).contiguous()
        for row, (ih, iw) in enumerate(sizes):  # padding is the mean colour: 0 after normalisation
            if ih < h:
                images[row, :, ih:, :] = 0.0
            if iw < w:
                images[row, :, :, iw:] = 0.0
        return DetectionBatch(images, targets, sizes, list(index))

    def train_batches(self, batch_size: int, rng: torch.Generator) -> Iterator[DetectionBatch]:
        """One epoch: batches of one padded shape in an order drawn from ``rng`` (ragged ends dropped)."""
        if batch_size > self.num_train:
            raise UserError(f"trainer.batch_size={batch_size} is larger than the {self.num_train} training images")
        for index in iter_train_index(self.train_buckets, batch_size, rng):
            yield self.make_batch(self.train, index, rng)

    def eval_batches(self, batch_size: int) -> Iterator[DetectionBatch]:
        for index in iter_eval_index(self.val_buckets, batch_size):
            yield self.make_batch(self.val, index)


def pad_to_multiple(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# ---------------------------------------------------------------- the metric
def coco_eval(ground_truth: dict, detections: list[dict]) -> tuple[list[float], str]:
    """pycocotools COCOeval (bbox) of ``detections`` (COCO results format) on ``ground_truth`` (a COCO
    dict): the 12 statistics of ``summarize()`` and its printed summary."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        if detections:
            dt = gt.loadRes([dict(d) for d in detections])  # loadRes adds fields to its dicts: give it copies
        else:  # loadRes refuses an empty list; no detection is AP 0, not an error
            dt = COCO()
            dt.dataset = {"images": ground_truth["images"], "categories": ground_truth["categories"], "annotations": []}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = sorted(img["id"] for img in ground_truth["images"])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats], out.getvalue()


def detections_json(detections: list[dict]) -> str:
    return json.dumps(detections, separators=(",", ":"))


# ---------------------------------------------------------------- the workload
def _net(model: nn.Module) -> nn.Module:
    """The FCOS network (``features``, ``head``, ``anchors``, ``fcos``) under any wrapper."""
    return unwrap(model, "anchors", "an FCOS detector (models.fcos)")


@register_workload
class Detection(Workload):
    """COCO-format detection: train on the training split, COCOeval box AP on the validation split."""

    name = "detection"
    benchmark = "coco"
    metric_name = "box_ap"
    prediction_files = ("detections.json", "ground_truth.json")
    config_class = DetectionConfig
    data_config_class = DetectionDataConfig

    def __init__(self, cfg: Any, device: torch.device) -> None:
        super().__init__(cfg, device)
        self._eval_flops = ShapeCounts()  # forward multiply-adds of one eval image, by padded shape

    def build_data(self) -> DetectionData:
        return DetectionData(self.cfg, self.device)

    def build_model(self, data: DetectionData) -> nn.Module:
        return self.registered_model(num_classes=len(data.category_ids))

    def model_inputs(self, batch: DetectionBatch) -> tuple:
        return (batch.images,)

    def batch_size_of(self, batch: DetectionBatch) -> int:
        return batch.num_images

    def positions_of(self, batch: DetectionBatch) -> tuple[int, int]:
        """(real, padded) pixels: padding is what the shape buckets could not avoid."""
        return sum(h * w for h, w in batch.sizes), batch.num_images * int(batch.images.shape[-2] * batch.images.shape[-1])

    def loss(self, model: nn.Module, batch: DetectionBatch) -> tuple[torch.Tensor, int]:
        """torchvision's FCOS loss of the batch (classification + box regression + centre-ness, each already
        normalised by the batch's foreground locations as FCOS does), with count 1."""
        net = _net(model)
        feats = net.features(batch.images)
        cls, reg, ctr = net.head(feats)
        head = {"cls_logits": cls.float(), "bbox_regression": reg.float(), "bbox_ctrness": ctr.float()}
        losses = net.fcos.compute_loss(batch.targets, head, net.anchors(batch.images, feats),
                                       [int(f.shape[-2] * f.shape[-1]) for f in feats])
        return sum(losses.values()), 1

    def _batch_macs(self, model: nn.Module, batch: DetectionBatch) -> float:
        """Forward multiply-adds of an evaluation batch: one image of its padded shape counted once,
        times the batch size (in eval mode no op of the network mixes the images of a batch)."""
        return self._eval_flops.macs_of(model, tuple(batch.images.shape[1:]), (batch.images[:1],)) * batch.num_images

    @torch.no_grad()
    def predict(self, model: nn.Module, data: DetectionData) -> tuple[list[dict], float]:
        """Detections of every validation image in COCO results format, and the forward multiply-adds spent."""
        net = _net(model)
        count_flops = self.counts_flops()
        detections: list[dict] = []
        macs = 0.0
        for batch in data.eval_batches(int(self.cfg.trainer.eval_batch_size)):
            feats = net.features(batch.images)
            cls, reg, ctr = net.head(feats)
            per_level = [int(f.shape[-2] * f.shape[-1]) for f in feats]
            head = {k: list(v.float().split(per_level, dim=1))
                    for k, v in (("cls_logits", cls), ("bbox_regression", reg), ("bbox_ctrness", ctr))}
            anchors = [list(a.split(per_level)) for a in net.anchors(batch.images, feats)]
            results = net.fcos.postprocess_detections(head, anchors, batch.sizes)
            for i, res in zip(batch.index, results):
                image_id = data.val.images[i]["id"]
                boxes = res["boxes"].cpu().tolist()
                for (x1, y1, x2, y2), score, label in zip(boxes, res["scores"].cpu().tolist(), res["labels"].cpu().tolist()):
                    detections.append({"image_id": image_id, "category_id": data.category_ids[label],
                                       "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                       "score": round(score, 5)})
            if count_flops:
                macs += self._batch_macs(model, batch)
        return detections, macs

    def evaluate(self, model: nn.Module, data: DetectionData) -> Evaluation:
        from importlib.metadata import version

        detections, macs = self.predict(model, data)
        text = detections_json(detections)
        stats, summary = coco_eval(data.val.dataset, json.loads(text))  # scored from the file's own text
        log.debug("COCOeval summary:\n%s", summary)
        metrics = {name: value for name, value in zip(STAT_NAMES, stats) if value >= 0}
        fcos = _net(model).fcos
        details: dict[str, Any] = {
            "scorer": f"pycocotools {version('pycocotools')} COCOeval(iouType='bbox'), default Params "
                      "(IoU 0.50:0.05:0.95, maxDets 1/10/100, areas small < 32^2 <= medium < 96^2 <= large)",
            "coco_stats": {name: (value if value >= 0 else None) for name, value in zip(STAT_NAMES, stats)},
            "ground_truth": f"ground_truth.json: the {len(data.val)} evaluated images of {data.val.path}",
            "detections": len(detections),
            "postprocess": {"score_thresh": fcos.score_thresh, "nms_thresh": fcos.nms_thresh,
                            "detections_per_img": fcos.detections_per_img, "topk_candidates": fcos.topk_candidates},
            "flops_scope": FLOPS_SCOPE,
        }
        if self._eval_flops.unsupported_ops:
            details["flops_unsupported_ops"] = dict(sorted(self._eval_flops.unsupported_ops.items()))
        counted = self.counts_flops()
        files = {"detections.json": text, "ground_truth.json": json.dumps(data.val.dataset)}
        return Evaluation(metrics=metrics, files=files, details=details, flops=2.0 * macs if counted else None,
                          flops_method=EVAL_FLOPS_METHOD if counted else None)

    def error_from_metric(self, metric_value: float) -> float:
        # Thompson et al. use COCO error = 1 - box AP.
        return 1.0 - metric_value
