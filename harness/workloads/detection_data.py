"""Data of the detection workload: a COCO-format reader and the generated Fashion-MNIST scenes.

**COCO format** (Lin et al. 2014; the layout of ``instances_{train,val}2017.json``): a JSON object
with ``images`` (``id, file_name, width, height``), ``categories`` (``id, name``) and
``annotations`` (``id, image_id, category_id, bbox [x, y, w, h]`` in pixels from the top-left
corner, ``area``, ``iscrowd``). :func:`read_coco` checks every annotation and stops at the first
bad one with a one-line :class:`UserError` naming the file and the annotation id: a box outside
its image (by more than :data:`BOX_TOLERANCE_PX`), a negative size, an unknown category or
image, a missing field; a file that is not JSON names the file, line and column.

**Generated scenes** (``data=fashion_scenes``, the default: no detection dataset can be
downloaded here): Fashion-MNIST items (Xiao et al. 2017) pasted onto noisy, textured canvases.
Each canvas is ``H x W`` with both sides drawn from ``canvas_sizes`` (96 or 128 px), holds 1-6
objects of the 10 Fashion-MNIST classes, each scaled so its tight box's longer side is drawn
uniformly from ``[min_object_px, max_object_px]`` (8-120 px); in a share ``large_scene_share`` of
the scenes the canvas is the largest size and its first object nearly fills it (0.85-1.0 of its side), since
COCO's large range (area >= 96^2 px) is otherwise out of reach on such canvases. Objects are tinted with a random colour and alpha-blended by its own intensity.
Objects may overlap, but no box is covered more than ``max_covered`` by any other. The ground-truth
box is the tight box of the item's pixels above :data:`ITEM_THRESHOLD` after scaling; ``area`` is
the number of those pixels (as COCO's ``area`` is the segment's, not the box's). Training scenes
use items of Fashion-MNIST's training set, validation scenes items of its test set. Every scene
is drawn from its own seed ``(scene_seed, split, index)``, so the set does not depend on the
number of worker processes. The scenes are written once as COCO JSON plus PNG images into
``<cache_dir>/fashion_scenes-<hash of every parameter>/`` and read back from there afterwards.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from harness.errors import DataNotFoundError, UserError
from harness.workload import DataConfig

log = logging.getLogger(__name__)

#: A box may exceed its image by this much (pixels) before it is an error (rounding in the files).
BOX_TOLERANCE_PX = 1.0
#: Fashion-MNIST pixels above this (0-255) belong to the item (its background is 0).
ITEM_THRESHOLD = 24
#: Class names of Fashion-MNIST labels 0-9 (Xiao et al. 2017, table 1), category ids 1-10.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
#: Bump when the scene recipe changes, so old caches are not reused.
GENERATOR_VERSION = 1
#: COCOeval's area ranges (pycocotools ``Params.areaRng``): small < 32^2 <= medium < 96^2 <= large.
COCO_AREA_SMALL, COCO_AREA_LARGE = 32 ** 2, 96 ** 2


@dataclass
class DetectionDataConfig(DataConfig):
    """``data.*`` for ``workload=detection``: COCO-format files under ``root``, or scenes generated
    from the Fashion-MNIST files under ``root`` (``generate: true``)."""

    name: str = "fashion_scenes"
    generate: bool = True  # true: generate the scenes from Fashion-MNIST in root; false: read COCO files in root
    train_annotations: str = "annotations/instances_train2017.json"  # relative to root
    val_annotations: str = "annotations/instances_val2017.json"
    train_images: str = "train2017"  # image folders, relative to root
    val_images: str = "val2017"
    preload: bool = True  # decode every image into memory once (small sets); false: read per batch
    # generated scenes (ignored when generate is false)
    num_train_images: int = 10000
    num_val_images: int = 1000
    canvas_sizes: list[int] = field(default_factory=lambda: [96, 128])
    min_objects: int = 1
    max_objects: int = 6
    min_object_px: int = 8  # longer side of an object's box
    max_object_px: int = 120
    max_covered: float = 0.4  # no box is covered more than this share by another
    # share of scenes on the largest canvas whose first object nearly fills it (0.85-1.0 of its side), so that
    # COCO's large range (area >= 96^2 px) occurs at all on 96-128 px canvases
    large_scene_share: float = 0.25
    scene_seed: int = 0
    workers: int = 2  # generation processes


# ---------------------------------------------------------------- COCO reading
@dataclass
class CocoSplit:
    """One COCO-format split: images, their boxes (x1, y1, x2, y2) and contiguous labels, and the raw JSON."""

    path: Path  # the annotation file
    image_dir: Optional[Path]  # None for in-memory images
    images: list[dict]  # COCO image records, in file order
    boxes: list[torch.Tensor]  # per image, (n, 4) float32 xyxy; crowd and empty boxes left out
    labels: list[torch.Tensor]  # per image, (n,) int64 in 0..num_classes-1
    dataset: dict  # the COCO JSON (for COCOeval)
    pixels: Optional[list[np.ndarray]] = None  # (H, W, 3) uint8 per image when held in memory
    skipped_crowd: int = 0
    skipped_empty: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray:
        if self.pixels is not None:
            return self.pixels[i]
        return _read_image(self.image_dir / self.images[i]["file_name"])


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))  # writable, so torch.from_numpy takes it as is
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: image not found") from None
    except OSError as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from None


def load_coco_json(path: Path) -> dict:
    """The JSON object of a COCO annotation file; a one-line error when it is missing or not JSON."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found (a COCO annotation file; point data.root at the folder above "
                                "annotations/)")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise UserError(f"{path}: not a COCO annotation file (needs the lists 'images', 'annotations' and 'categories')")
    return data


def check_coco(data: dict, path: Path) -> None:
    """Raise a one-line :class:`UserError` for the first malformed record of a COCO annotation dict."""
    cats = set()
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c:
            raise UserError(f"{path}: category {c!r:.60} has no id")
        cats.add(c["id"])
    sizes: dict[Any, tuple[float, float]] = {}
    for img in data["images"]:
        try:
            sizes[img["id"]] = (float(img["width"]), float(img["height"]))
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{path}: image {img.get('id') if isinstance(img, dict) else img!r:.60}: needs id, "
                            "file_name, width and height") from None
    for ann in data["annotations"]:
        aid = ann.get("id") if isinstance(ann, dict) else None
        where = f"{path}: annotation id {aid}"
        if aid is None:
            raise UserError(f"{path}: an annotation without an id ({ann!r:.80})")
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise UserError(f"{where}: no {key!r}")
        if ann["category_id"] not in cats:
            raise UserError(f"{where}: unknown category_id {ann['category_id']!r} (the file's categories: "
                            f"{', '.join(map(str, sorted(cats, key=str)))})")
        if ann["image_id"] not in sizes:
            raise UserError(f"{where}: unknown image_id {ann['image_id']!r}")
        box = ann["bbox"]
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
            raise UserError(f"{where}: bbox {box!r:.60} is not 4 finite numbers [x, y, w, h]")
        x, y, w, h = box
        width, height = sizes[ann["image_id"]]
        if w < 0 or h < 0:
            raise UserError(f"{where}: bbox {box} has a negative width or height")
        tol = BOX_TOLERANCE_PX
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            raise UserError(f"{where}: bbox {box} lies outside its image {ann['image_id']} "
                            f"({width:g} x {height:g} px)")


def coco_split(data: dict, path: Path, image_dir: Optional[Path], cat_index: dict[Any, int],
               limit: Optional[int] = None, pixels: Optional[list[np.ndarray]] = None) -> CocoSplit:
    """A checked split: the first ``limit`` images (all when None) with their training boxes."""
    check_coco(data, path)
    images = data["images"][:limit] if limit is not None else list(data["images"])
    if not images:
        raise UserError(f"{path}: no images")
    keep = {img["id"] for img in images}
    per_image: dict[Any, list[dict]] = {i: [] for i in keep}
    for ann in data["annotations"]:
        if ann["image_id"] in keep:
            per_image[ann["image_id"]].append(ann)
    boxes, labels = [], []
    crowd = empty = 0
    for img in images:
        xyxy, cls = [], []
        for ann in per_image[img["id"]]:
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0):
                crowd += 1  # crowd regions are ignored in training (COCOeval ignores matches to them)
                continue
            if w < 1 or h < 1:
                empty += 1  # degenerate boxes have no FCOS location inside them
                continue
            xyxy.append([x, y, x + w, y + h])
            cls.append(cat_index[ann["category_id"]])
        boxes.append(torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(cls, dtype=torch.int64))
    # COCOeval reads each object's "area" (its area ranges); a file without it gets the box's area
    anns = [a if "area" in a else {**a, "area": a["bbox"][2] * a["bbox"][3]}
            for a in data["annotations"] if a["image_id"] in keep]
    subset = {**data, "images": images, "annotations": anns}
    if pixels is not None:
        index = {img["id"]: k for k, img in enumerate(data["images"])}
        pixels = [pixels[index[img["id"]]] for img in images]
    return CocoSplit(path, image_dir, images, boxes, labels, subset, pixels, crowd, empty)


def area_counts(data: dict) -> dict[str, int]:
    """Ground-truth objects per COCOeval area range (by the annotation's ``area``), crowd excluded."""
    counts = {"small": 0, "medium": 0, "large": 0}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        a = ann.get("area", ann["bbox"][2] * ann["bbox"][3])
        counts["small" if a < COCO_AREA_SMALL else "medium" if a < COCO_AREA_LARGE else "large"] += 1
    return counts


# ---------------------------------------------------------------- scene generation
def scene_params(cfg: Any) -> dict[str, Any]:
    """Every setting the generated scenes depend on (the cache key hashes these)."""
    return dict(version=GENERATOR_VERSION, num_train_images=int(cfg.num_train_images),
                num_val_images=int(cfg.num_val_images), canvas_sizes=[int(s) for s in cfg.canvas_sizes],
                min_objects=int(cfg.min_objects), max_objects=int(cfg.max_objects),
                min_object_px=int(cfg.min_object_px), max_object_px=int(cfg.max_object_px),
                max_covered=float(cfg.max_covered), large_scene_share=float(cfg.large_scene_share),
                scene_seed=int(cfg.scene_seed))


def check_scene_params(p: dict[str, Any]) -> None:
    def bad(msg: str) -> None:
        raise UserError(f"data.{msg}")

    if p["num_train_images"] < 1 or p["num_val_images"] < 1:
        bad(f"num_train_images={p['num_train_images']} and num_val_images={p['num_val_images']} must be >= 1")
    if not p["canvas_sizes"] or min(p["canvas_sizes"]) < 16:
        bad(f"canvas_sizes={p['canvas_sizes']} must list sides of at least 16 px")
    if not 1 <= p["min_objects"] <= p["max_objects"]:
        bad(f"min_objects={p['min_objects']}, max_objects={p['max_objects']}: need 1 <= min <= max")
    if not 4 <= p["min_object_px"] <= p["max_object_px"]:
        bad(f"min_object_px={p['min_object_px']}, max_object_px={p['max_object_px']}: need 4 <= min <= max")
    if not 0.0 <= p["max_covered"] <= 1.0 or not 0.0 <= p["large_scene_share"] <= 1.0:
        bad(f"max_covered={p['max_covered']} and large_scene_share={p['large_scene_share']} must be in [0, 1]")


def _tight_box(item: np.ndarray) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) inclusive of an item's pixels above the threshold."""
    rows = np.flatnonzero((item > ITEM_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((item > ITEM_THRESHOLD).any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float (h, w, 3) canvas in [0, 1]: two colours mixed by smooth noise, stripes or blobs, pixel noise."""
    from PIL import Image

    a, b = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    cells = int(rng.integers(2, 9))
    coarse = rng.random((cells, cells)).astype(np.float32)
    mix = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR))[..., None]
    canvas = a * mix + b * (1.0 - mix)
    if rng.random() < 0.5:  # stripes at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        canvas = canvas + rng.uniform(0.05, 0.25) * (stripes[..., None] - 0.5)
    canvas = canvas + rng.normal(0.0, rng.uniform(0.02, 0.12), (h, w, 3))
    return canvas


def _overlap_ok(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]], max_covered: float) -> bool:
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for a0, b0, a1, b1 in placed:
        inter = max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0))
        if inter > max_covered * min(area, (a1 - a0) * (b1 - b0)):
            return False
    return True


def make_scene(items: np.ndarray, labels: np.ndarray, p: dict[str, Any], split_code: int, index: int
               ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One scene: (H, W, 3) uint8 pixels and its objects (``bbox [x, y, w, h]``, ``area``, ``category_id``)."""
    from PIL import Image

    rng = np.random.default_rng([p["scene_seed"], split_code, index])
    large = rng.random() < p["large_scene_share"]
    h, w = (int(rng.choice(p["canvas_sizes"])) if not large else max(p["canvas_sizes"]) for _ in range(2))
    canvas = _background(rng, h, w)
    wanted = int(rng.integers(p["min_objects"], p["max_objects"] + 1))
    placed: list[tuple[int, int, int, int]] = []
    objects: list[dict[str, Any]] = []
    lo, hi = math.log(p["min_object_px"]), math.log(min(p["max_object_px"], min(h, w) - 2))
    for j in range(wanted):
        k = int(rng.integers(len(items)))
        item = items[k]
        r0, r1, c0, c1 = _tight_box(item)
        crop = item[r0:r1 + 1, c0:c1 + 1]
        side = rng.uniform(0.85, 1.0) * (min(h, w) - 2) if large and j == 0 else rng.uniform(math.exp(lo), math.exp(hi))
        factor = side / max(crop.shape)
        size = (max(2, round(crop.shape[1] * factor)), max(2, round(crop.shape[0] * factor)))  # (w, h)
        scaled = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR))
        mask = scaled > ITEM_THRESHOLD
        if not mask.any():
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        for _attempt in range(10):
            top = int(rng.integers(0, h - size[1] + 1))
            left = int(rng.integers(0, w - size[0] + 1))
            box = (left + int(cols[0]), top + int(rows[0]), left + int(cols[-1]) + 1, top + int(rows[-1]) + 1)
            if _overlap_ok(box, placed, p["max_covered"]):
                break
        else:
            continue
        alpha = np.clip(scaled.astype(np.float32) / 255.0 * 1.5, 0.0, 1.0)[..., None]
        tint = rng.uniform(0.15, 1.0, 3)
        shade = tint * (0.35 + 0.65 * scaled[..., None] / 255.0)
        region = canvas[top:top + size[1], left:left + size[0]]
        canvas[top:top + size[1], left:left + size[0]] = region * (1.0 - alpha) + shade * alpha
        placed.append(box)
        objects.append(dict(category_id=int(labels[k]) + 1, bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                            area=int(mask.sum()), iscrowd=0))
    pixels = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return pixels, objects


_WORKER: dict[str, Any] = {}


def _init_worker(items: np.ndarray, labels: np.ndarray, params: dict, out_dir: Optional[str]) -> None:
    _WORKER.update(items=items, labels=labels, params=params, out_dir=out_dir)


def _scene_task(job: tuple[int, int]) -> tuple[int, Any, list[dict]]:
    split_code, index = job
    pixels, objects = make_scene(_WORKER["items"], _WORKER["labels"], _WORKER["params"], split_code, index)
    if _WORKER["out_dir"] is None:
        return index, pixels, objects
    from PIL import Image

    Image.fromarray(pixels).save(os.path.join(_WORKER["out_dir"], f"{index + 1:06d}.png"), compress_level=1)
    return index, pixels.shape[:2], objects


def generate_split(items: np.ndarray, labels: np.ndarray, p: dict[str, Any], split: str, count: int,
                   out_dir: Optional[Path], workers: int) -> tuple[dict, Optional[list[np.ndarray]]]:
    """``count`` scenes of ``split`` as a COCO dict; PNGs into ``out_dir`` (or the pixels returned when None)."""
    split_code = {"train": 0, "val": 1}[split]
    jobs = [(split_code, i) for i in range(count)]
    init = (items, labels, p, None if out_dir is None else str(out_dir))
    if workers > 1 and count >= 64:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
            results = pool.map(_scene_task, jobs, chunksize=64)
    else:
        _init_worker(*init)
        results = [_scene_task(job) for job in jobs]
    images, annotations, pixels = [], [], []
    for index, shape_or_pixels, objects in results:
        hw = shape_or_pixels if out_dir is not None else shape_or_pixels.shape[:2]
        if out_dir is None:
            pixels.append(shape_or_pixels)
        images.append(dict(id=index + 1, file_name=f"{index + 1:06d}.png", height=int(hw[0]), width=int(hw[1])))
        for obj in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=index + 1, **obj))
    categories = [dict(id=i + 1, name=name, supercategory="fashion") for i, name in enumerate(FASHION_CLASSES)]
    info = dict(description=f"Fashion-MNIST scenes ({split}), generated by harness.workloads.detection_data",
                params=p, items_from="Fashion-MNIST " + ("training" if split == "train" else "test") + " set")
    return dict(info=info, images=images, annotations=annotations, categories=categories), \
        (None if out_dir is not None else pixels)


def _fashion_items(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from harness.workloads.image_data import _find_idx, read_idx

    prefix = "train" if split == "train" else "t10k"
    if not root.is_dir():
        raise DataNotFoundError(f"data.root={root}: no such folder (it should hold the Fashion-MNIST IDX files the "
                                "scenes are made from; apt-get install dataset-fashion-mnist)")
    return read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte")), read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))


def scenes_key(p: dict[str, Any], root: Path) -> str:
    """Cache key: the parameters and the Fashion-MNIST files' names and sizes."""
    from harness.workloads.image_data import _find_idx

    files = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        path = _find_idx(root, stem)
        files.append([path.name, path.stat().st_size])
    return hashlib.sha256(json.dumps([p, files], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class GeneratedScenes:
    """Where the scenes are: ``folder`` (COCO layout) when cached, else the in-memory splits."""

    folder: Optional[Path]
    cache_hit: bool
    seconds: float
    memory: Optional[dict[str, tuple[dict, list[np.ndarray]]]] = None


def generated_scenes(cfg: Any, cache_dir: Optional[Path]) -> GeneratedScenes:
    """The scenes of ``cfg`` (a :class:`DetectionDataConfig`): read from the cache, else generated
    (into the cache when ``cache_dir`` is set, in memory otherwise)."""
    p = scene_params(cfg)
    check_scene_params(p)
    root = Path(str(cfg.root)).expanduser()
    start = time.perf_counter()
    workers = max(1, int(cfg.workers))
    if cache_dir is None:
        memory = {}
        for split, count in (("train", p["num_train_images"]), ("val", p["num_val_images"])):
            items, labels = _fashion_items(root, split)
            memory[split] = generate_split(items, labels, p, split, count, None, workers)
        return GeneratedScenes(None, False, time.perf_counter() - start, memory)
    folder = cache_dir.resolve() / f"fashion_scenes-{scenes_key(p, root)}"
    if (folder / "annotations" / "instances_val.json").is_file():
        return GeneratedScenes(folder, True, 0.0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_dir))
    try:
        (tmp / "annotations").mkdir()
        for split, count in (("train", p["num_train_images"]), ("val", p["num_val_images"])):
            items, labels = _fashion_items(root, split)
            (tmp / split).mkdir()
            coco, _ = generate_split(items, labels, p, split, count, tmp / split, workers)
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote the same scenes meanwhile: use theirs
            if not (folder / "annotations" / "instances_val.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated %d + %d scenes into %s in %.1f s", p["num_train_images"], p["num_val_images"], folder,
             time.perf_counter() - start)
    return GeneratedScenes(folder, False, time.perf_counter() - start)


# ---------------------------------------------------------------- batches
@dataclass
class DetectionBatch:
    """Images (B, 3, H, W) normalised and padded to a common size, and their targets."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]  # per image: boxes (n, 4) xyxy, labels (n,)
    sizes: list[tuple[int, int]]  # each image's own (H, W) before padding
    index: list[int]  # the images' positions in their split

    @property
    def num_images(self) -> int:
        return len(self.sizes)


def pad_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def shape_buckets(split: CocoSplit, multiple: int) -> dict[tuple[int, int], list[int]]:
    """Image positions by their padded (H, W): batches are made within a bucket."""
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(split.images):
        buckets.setdefault((pad_to(int(img["height"]), multiple), pad_to(int(img["width"]), multiple)), []).append(i)
    return dict(sorted(buckets.items()))


def iter_train_index(buckets: dict[tuple[int, int], list[int]], batch_size: int, rng: torch.Generator
                     ) -> Iterator[list[int]]:
    """One epoch of batches within shape buckets (each bucket's ragged end dropped), in a random order."""
    batches: list[list[int]] = []
    for members in buckets.values():
        order = torch.randperm(len(members), generator=rng).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batches.append([members[k] for k in order[start:start + batch_size]])
    for b in torch.randperm(len(batches), generator=rng).tolist():
        yield batches[b]


def iter_eval_index(buckets: dict[tuple[int, int], list[int]], batch_size: int) -> Iterator[list[int]]:
    for members in buckets.values():
        for start in range(0, len(members), batch_size):
            yield members[start:start + batch_size]

