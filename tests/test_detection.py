"""workload=detection: the COCO reader and its errors, the generated scenes and their cache, FCOS, the
batches and COCOeval re-scoring. CPU, seconds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from harness.errors import DataNotFoundError, UserError
from harness.workloads import detection_data as dd
from harness.workloads.detection import STAT_NAMES, Detection, DetectionConfig, DetectionData, coco_eval
from harness.workloads.detection_data import DetectionDataConfig, check_coco, load_coco_json
from models import build_model


# ---------------------------------------------------------------- helpers
def _coco(images=((1, 100, 120), (2, 64, 64)), anns=None) -> dict:
    """A small COCO dict: images (id, height, width), two categories (ids 3 and 7)."""
    if anns is None:
        anns = [dict(id=10, image_id=1, category_id=3, bbox=[10, 20, 30, 40], area=1200, iscrowd=0),
                dict(id=11, image_id=1, category_id=7, bbox=[50, 0, 70, 100], area=7000, iscrowd=0),
                dict(id=12, image_id=2, category_id=7, bbox=[0, 0, 64, 64], area=4096, iscrowd=1),
                dict(id=13, image_id=2, category_id=3, bbox=[5, 5, 20, 10], area=200, iscrowd=0)]
    return dict(images=[dict(id=i, file_name=f"{i}.png", height=h, width=w) for i, h, w in images],
                categories=[dict(id=3, name="three"), dict(id=7, name="seven")], annotations=anns)


def _write_coco_folder(root, data: dict) -> None:
    from PIL import Image

    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
        (root / split).mkdir()
        for img in data["images"]:
            px = np.full((img["height"], img["width"], 3), 40 * img["id"], dtype=np.uint8)
            px[:, :8] = 255  # a white band on the left edge: flips move it to the right
            Image.fromarray(px).save(root / split / img["file_name"])


def _cfg(root, *, generate=False, cache_dir=None, **data) -> OmegaConf:
    names = dict(train_annotations="annotations/instances_train.json", val_annotations="annotations/instances_val.json",
                 train_images="train", val_images="val") if not generate else {}
    return OmegaConf.create({
        "workload": OmegaConf.structured(DetectionConfig(cache_dir=None if cache_dir is None else str(cache_dir))),
        "data": OmegaConf.structured(DetectionDataConfig(root=str(root), generate=generate, **names, **data)),
        "model": {"name": "fcos"}, "scale": 0.125,
        "trainer": {"eval_batch_size": 8}, "measure": {"count_flops": False},
    })


SMALL_SCENES = dict(num_train_images=24, num_val_images=12, workers=1)


# ---------------------------------------------------------------- the model
def test_scale_one_is_torchvisions_fcos_resnet50_fpn():
    from torchvision.models.detection import fcos_resnet50_fpn

    ours = build_model("fcos", scale=1.0, num_classes=91)
    theirs = fcos_resnet50_fpn(weights=None, weights_backbone=None)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs) == 32_322_720
    assert sorted(p.shape for p in ours.parameters()) == sorted(p.shape for p in theirs.parameters())


def test_scaled_fcos_outputs_one_row_per_location_of_every_level():
    model = build_model("fcos", scale=0.125, num_classes=10).eval()
    cls, reg, ctr = model(torch.zeros(2, 3, 96, 128))
    # strides 8..128 on 96 x 128: 12x16 + 6x8 + 3x4 + 2x2 + 1x1 locations
    assert cls.shape == (2, 257, 10) and reg.shape == (2, 257, 4) and ctr.shape == (2, 257, 1)
    assert model.fcos.head.classification_head.conv[0].in_channels == 32  # 256 x 0.125
    with pytest.raises(ValueError, match="model.depth=42 is invalid"):
        build_model("fcos", scale=0.125, depth=42)


# ---------------------------------------------------------------- COCO reading and its errors
@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][1]["bbox"].__setitem__(2, 80), "annotation id 11: bbox [50, 0, 80, 100] lies outside its image 1"),
    (lambda d: d["annotations"][3].__setitem__("category_id", 5), "annotation id 13: unknown category_id 5"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(3, -1), "annotation id 10: bbox [10, 20, 30, -1] has a negative"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 9), "annotation id 10: unknown image_id 9"),
    (lambda d: d["annotations"][2].pop("bbox"), "annotation id 12: no 'bbox'"),
])
def test_malformed_annotation_is_one_line_error_naming_file_and_annotation(tmp_path, change, message):
    data = _coco()
    change(data)
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as info:
        check_coco(load_coco_json(path), path)
    assert str(info.value).startswith(f"{path}: {message}") and "\n" not in str(info.value)


def test_bad_json_and_missing_file_are_one_line_errors(tmp_path):
    path = tmp_path / "instances_train.json"
    path.write_text('{"images": [],\n "annotations": [}')
    with pytest.raises(UserError, match=r"instances_train.json: not valid JSON \(.* at line 2 column 18\)$"):
        load_coco_json(path)
    path.write_text('{"images": []}')
    with pytest.raises(UserError, match="not a COCO annotation file"):
        load_coco_json(path)
    with pytest.raises(DataNotFoundError, match="nowhere.json: not found"):
        load_coco_json(tmp_path / "nowhere.json")


def test_coco_folder_is_read_into_padded_batches_with_crowd_left_out(tmp_path):
    _write_coco_folder(tmp_path, _coco())
    data = DetectionData(_cfg(tmp_path), torch.device("cpu"))
    assert data.category_ids == [3, 7] and data.num_train == data.num_eval == 2
    assert data.train.skipped_crowd == 1  # crowd regions are not training targets
    assert data.train.labels[0].tolist() == [0, 1] and data.train.labels[1].tolist() == [0]
    assert data.train.boxes[0].tolist() == [[10, 20, 40, 60], [50, 0, 120, 100]]  # xywh -> xyxy
    assert list(data.train_buckets) == [(64, 64), (128, 128)]  # 100 x 120 padded to multiples of 32
    batch = data.make_batch(data.train, [0, 1])
    assert batch.images.shape == (2, 3, 128, 128) and batch.sizes == [(100, 120), (64, 64)]
    wl = Detection(_cfg(tmp_path), torch.device("cpu"))
    assert wl.positions_of(batch) == (100 * 120 + 64 * 64, 2 * 128 * 128)
    # padding is the mean colour: 0 after normalisation
    assert torch.all(batch.images[1, :, 64:, :] == 0) and torch.all(batch.images[0, :, :, 120:] == 0)


def test_horizontal_flip_moves_pixels_and_boxes_together(tmp_path):
    _write_coco_folder(tmp_path, _coco())
    data = DetectionData(_cfg(tmp_path), torch.device("cpu"))
    rng = torch.Generator().manual_seed(0)
    while True:  # draw until image 0 is flipped (probability 1/2 per draw)
        batch = data.make_batch(data.train, [0], rng)
        if batch.images[0, 0, 0, 119] > batch.images[0, 0, 0, 0]:
            break
    assert batch.targets[0]["boxes"].tolist() == [[80, 20, 110, 60], [0, 0, 70, 100]]  # x -> 120 - x
    plain = data.make_batch(data.train, [0])
    assert torch.equal(batch.images[0, :, :, :120].flip(-1), plain.images[0, :, :, :120])


# ---------------------------------------------------------------- generated scenes
def test_scene_object_box_and_area_are_the_scaled_items_hand_checked():
    item = np.zeros((1, 28, 28), dtype=np.uint8)
    item[0, 4:24, 10:18] = 200  # a 20 x 8 block
    p = dd.scene_params(OmegaConf.structured(DetectionDataConfig(min_objects=1, max_objects=1, min_object_px=40,
                                                                 max_object_px=40, canvas_sizes=[96],
                                                                 large_scene_share=0.0)))
    pixels, objects = dd.make_scene(item, np.array([4]), p, 0, 7)
    assert pixels.shape == (96, 96, 3) and pixels.dtype == np.uint8
    (obj,) = objects
    x, y, w, h = obj["bbox"]
    assert (w, h) == (16, 40) and obj["area"] == 640 and obj["category_id"] == 5  # scaled x2; label 4 -> id 5
    assert 0 <= x and x + w <= 96 and 0 <= y and y + h <= 96


def test_generated_scenes_are_seeded_and_cached_by_their_parameters(tmp_path, fashion_mnist_root):
    memory = dd.generated_scenes(_cfg(fashion_mnist_root, generate=True, **SMALL_SCENES).data, None)
    again = dd.generated_scenes(_cfg(fashion_mnist_root, generate=True, **SMALL_SCENES).data, None)
    assert memory.memory["train"][0] == again.memory["train"][0]
    assert all(np.array_equal(a, b) for a, b in zip(memory.memory["val"][1], again.memory["val"][1]))
    cfg = _cfg(fashion_mnist_root, generate=True, **SMALL_SCENES).data
    first = dd.generated_scenes(cfg, tmp_path)
    second = dd.generated_scenes(cfg, tmp_path)
    assert not first.cache_hit and second.cache_hit and first.folder == second.folder
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]  # no partial folder left behind
    on_disk = json.loads((first.folder / "annotations" / "instances_train.json").read_text())
    assert on_disk["annotations"] == memory.memory["train"][0]["annotations"]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(first.folder / "val" / "000003.png")), memory.memory["val"][1][2])
    cfg.scene_seed = 1
    assert dd.generated_scenes(cfg, tmp_path).folder != first.folder


def test_generated_scenes_populate_every_coco_area_range_with_1_to_6_objects(fashion_mnist_root):
    cfg = _cfg(fashion_mnist_root, generate=True, num_train_images=1, num_val_images=300, workers=1).data
    coco, pixels = dd.generated_scenes(cfg, None).memory["val"]
    check_coco(coco, "scenes")
    counts = dd.area_counts(coco)
    # large (>= 96^2 px of item pixels) needs a canvas-filling item: rare, but there
    assert counts["small"] > 300 and counts["medium"] > 300 and counts["large"] >= 3, counts
    per_image = np.bincount([a["image_id"] for a in coco["annotations"]], minlength=301)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 6 and per_image.mean() > 2.5
    assert {(img["height"], img["width"]) for img in coco["images"]} == {(96, 96), (96, 128), (128, 96), (128, 128)}
    assert {a["category_id"] for a in coco["annotations"]} == set(range(1, 11))
    assert {p.shape[:2] for p in pixels} == {(img["height"], img["width"]) for img in coco["images"]}
    sides = [max(a["bbox"][2:]) for a in coco["annotations"]]
    assert 8 <= min(sides) < 12 and 100 < max(sides) <= 126


# ---------------------------------------------------------------- the metric and the files
def test_coco_eval_hand_checked_ap():
    gt = _coco(images=((1, 100, 120),), anns=[dict(id=1, image_id=1, category_id=3, bbox=[10, 10, 40, 40], area=1600,
                                                    iscrowd=0)])
    perfect, _ = coco_eval(gt, [dict(image_id=1, category_id=3, bbox=[10, 10, 40, 40], score=0.9)])
    assert perfect[0] == pytest.approx(1.0) and perfect[4] == pytest.approx(1.0) and perfect[3] == -1  # medium only
    # IoU 1600 / (40 x 46) = 0.87: a match at thresholds 0.50 ... 0.85 (8 of 10) -> AP 0.8
    shifted, _ = coco_eval(gt, [dict(image_id=1, category_id=3, bbox=[10, 10, 46, 40], score=0.9)])
    assert shifted[0] == pytest.approx(0.8) and shifted[1] == pytest.approx(1.0)
    wrong_class, _ = coco_eval(gt, [dict(image_id=1, category_id=7, bbox=[10, 10, 40, 40], score=0.9)])
    assert wrong_class[0] == 0.0
    assert coco_eval(gt, [])[0][0] == 0.0  # no detection at all: AP 0, not an error


def test_run_writes_detections_that_pycocotools_rescores_to_the_same_ap(tmp_path, compose_workload):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from harness.runner import run

    cfg = compose_workload(tmp_path, "detection", "measure.codecarbon=false", "measure.count_flops=false",
                           "model.score_thresh=0.0", "model.detections_per_img=20")
    r = run(cfg, tmp_path / "run", [])
    assert r["status"] == "ok", r["failure_reason"]
    assert (r["benchmark"], r["dataset"], r["metric_name"]) == ("coco", "fashion_scenes", "box_ap")
    assert set(r["metric_details"]["coco_stats"]) == set(STAT_NAMES)
    dets = json.loads((tmp_path / "run" / "detections.json").read_text())
    assert len(dets) == 20 * r["eval_samples"] and set(dets[0]) == {"image_id", "category_id", "bbox", "score"}
    gt = COCO(str(tmp_path / "run" / "ground_truth.json"))
    evaluator = COCOeval(gt, gt.loadRes(str(tmp_path / "run" / "detections.json")), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(r["metric_value"], abs=1e-4)
    for name, value in zip(STAT_NAMES, evaluator.stats):
        assert r["metric_details"]["coco_stats"][name] == (pytest.approx(value, abs=1e-4) if value >= 0 else None)
    assert r["error"] == pytest.approx(1 - r["metric_value"])
