"""Data-pipeline benchmarks.

- :func:`benchmark_data_pipeline` (section ``data``): training images/s through decode +
  transforms + collate with DataLoader workers, to compare with the model's training images/s.
  With ``index_images``, also :func:`benchmark_indexing`.
- :func:`benchmark_indexing`: seconds to index the same synthetic images as a YOLO folder, a
  LabelMe folder and one COCO file, YOLO and LabelMe both parsed and read from the index cache.
- :func:`benchmark_coco_index`: load time and memory of the annotation index for a
  synthetic COCO-sized instances file (train2017: 118,287 images, ~860k boxes).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from unittest import mock

import numpy as np
import yaml
from PIL import Image

from frcnn.data import index_cache
from frcnn.data.batching import build_train_loader
from frcnn.data.coco import COCODetection, parse_coco
from frcnn.data.index_cache import MIN_CACHED_BYTES
from frcnn.data.labelme import parse_labelme
from frcnn.data.transforms import DetectionTransform
from frcnn.data.yolo import parse_yolo


def benchmark_data_pipeline(dataset_cfg, batch_size: int = 2, num_workers: int | None = None,
                            num_batches: int = 50, index_images: int = 0) -> dict:  # fmt: skip
    """Training-loader throughput. The first batch (worker start-up) is not timed. ``index_images``
    (0: none): also ``index_seconds``, :func:`benchmark_indexing` of that many images."""
    loader = build_train_loader(dataset_cfg, batch_size, seed=0, num_workers=num_workers)
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    seconds = time.perf_counter() - start
    result = {
        "dataset": str(dataset_cfg.name),
        "batch_size": batch_size,
        "num_workers": loader.num_workers,
        "num_batches": num_batches,
        "seconds": seconds,
        "images_per_s": num_batches * batch_size / seconds,
    }
    if index_images:
        result.update(benchmark_indexing(index_images))
    return result


INDEX_CLASSES = ["cat", "dog", "bird", "car", "person"]


def write_index_datasets(root: str, num_images: int, seed: int = 0) -> dict[str, str]:
    """``num_images`` 32x32 JPEGs with 1-4 boxes each (integer pixel corners), written once under
    ``root`` and described three ways: a YOLO folder (``yolo/``: data.yaml, images/train, labels/train),
    a LabelMe folder (``labelme/train``: one JSON per image, its imagePath the YOLO image) and one COCO
    file (``instances.json``, its images the YOLO ones). Returns their paths and the images folder."""
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(root, "yolo", "images", "train")
    labels_dir = os.path.join(root, "yolo", "labels", "train")
    labelme_dir = os.path.join(root, "labelme", "train")
    for folder in (images_dir, labels_dir, labelme_dir):
        os.makedirs(folder)
    with open(os.path.join(root, "yolo", "data.yaml"), "w") as f:
        yaml.safe_dump({"train": "images/train", "names": INDEX_CLASSES}, f)
    size = 32
    pixels = Image.new("RGB", (size, size), (90, 120, 150))
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(INDEX_CLASSES)],
    }
    for i in range(num_images):
        name = f"{i:06d}"
        pixels.save(os.path.join(images_dir, name + ".jpg"), quality=75)
        corners = np.sort(rng.integers(0, size, (int(rng.integers(1, 5)), 2, 2)), axis=1)  # [n, (lo, hi), (x, y)]
        corners[:, 1] += 1  # never empty, within the image
        classes = rng.integers(0, len(INDEX_CLASSES), len(corners)).tolist()
        rows, shapes = [], []
        coco["images"].append({"id": i + 1, "file_name": name + ".jpg", "width": size, "height": size})
        for c, ((x1, y1), (x2, y2)) in zip(classes, corners.tolist()):
            cx, cy, w, h = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size
            rows.append(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            shapes.append({"label": INDEX_CLASSES[c], "points": [[x1, y1], [x2, y2]], "shape_type": "rectangle"})
            bbox = [x1, y1, x2 - x1, y2 - y1]
            annotation = {"image_id": i + 1, "category_id": c + 1, "bbox": bbox, "area": bbox[2] * bbox[3]}
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, **annotation, "iscrowd": 0})
        with open(os.path.join(labels_dir, name + ".txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
        image_path = f"../../yolo/images/train/{name}.jpg"
        labelme = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
                   "imageHeight": size, "imageWidth": size}  # fmt: skip
        with open(os.path.join(labelme_dir, name + ".json"), "w") as f:
            json.dump(labelme, f)
    coco_file = os.path.join(root, "instances.json")
    with open(coco_file, "w") as f:
        json.dump(coco, f)
    return {"yolo": os.path.join(root, "yolo"), "labelme": os.path.join(root, "labelme"), "coco": coco_file,
            "images": images_dir}  # fmt: skip


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def benchmark_indexing(num_images: int = 20000, seed: int = 0) -> dict:
    """Seconds to index ``num_images`` synthetic images (:func:`write_index_datasets`), in a temporary
    folder with a temporary ``XDG_CACHE_HOME``: the COCO file's parse, and the first (no index cache:
    it parses and fills the cache) and the second (read from the cache) parse of the YOLO and the
    LabelMe split, with the cache's image threshold lowered to 1 so that any size is cached. The
    files were just written, so all of them are in the OS page cache."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.dict(os.environ, {"XDG_CACHE_HOME": os.path.join(tmp, "cache")}),
        mock.patch.object(index_cache, "MIN_CACHED_IMAGES", 1),
    ):
        start = time.perf_counter()
        paths = write_index_datasets(tmp, num_images, seed)
        write_seconds = time.perf_counter() - start
        seconds = {}
        seconds["coco"], (coco, *_) = _timed(lambda: parse_coco(paths["coco"], paths["images"], INDEX_CLASSES))
        parsers = {
            "yolo": lambda: parse_yolo(paths["yolo"], ["train"], INDEX_CLASSES),
            "labelme": lambda: parse_labelme(paths["labelme"], ["train"], INDEX_CLASSES),
        }
        splits = []
        for name, parse in parsers.items():
            for run in ("first", "cached"):  # the first parses and fills the cache, the second reads it
                seconds[f"{name}_{run}"], split = _timed(parse)
                splits.append(split)
    if any(s.problems for s in splits) or len({s.index.num_boxes for s in splits} | {coco.num_boxes}) != 1:
        raise AssertionError("the three layouts of the indexing benchmark disagree")  # a bug of the benchmark
    return {
        "index_images": num_images,
        "index_boxes": coco.num_boxes,
        "index_write_seconds": write_seconds,
        "index_seconds": seconds,
        "index_cached_speedup": {k: seconds[f"{k}_first"] / seconds[f"{k}_cached"] for k in ("yolo", "labelme")},
    }


def write_synthetic_coco(path: str, num_images: int, num_boxes: int, num_classes: int = 80, seed: int = 0) -> None:
    """A bbox-only COCO instances file with COCO's shape: 640x480-ish images, non-contiguous
    category ids (1..90 style), boxes spread at random over the images."""
    rng = np.random.default_rng(seed)
    widths = rng.integers(320, 641, num_images)
    heights = rng.integers(240, 481, num_images)
    images = [{"id": int(i) * 3 + 1, "file_name": f"{i:012d}.jpg", "width": int(w), "height": int(h)}
              for i, (w, h) in enumerate(zip(widths, heights))]  # fmt: skip
    owner = rng.integers(0, num_images, num_boxes)
    x = rng.uniform(0, 0.5, num_boxes) * widths[owner]
    y = rng.uniform(0, 0.5, num_boxes) * heights[owner]
    w = rng.uniform(0.05, 0.5, num_boxes) * widths[owner]
    h = rng.uniform(0.05, 0.5, num_boxes) * heights[owner]
    cats = rng.integers(0, num_classes, num_boxes)
    xywh = np.round(np.stack([x, y, w, h], axis=1), 2).tolist()
    annotations = [
        {"id": k + 1, "image_id": images[o]["id"], "category_id": int(c) + 1 + int(c) // 8, "bbox": b,
         "area": b[2] * b[3], "iscrowd": int(k % 100 == 0)}
        for k, (o, c, b) in enumerate(zip(owner.tolist(), cats.tolist(), xywh))
    ]  # fmt: skip
    categories = [{"id": c + 1 + c // 8, "name": f"class{c}"} for c in range(num_classes)]
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def benchmark_coco_index(num_images: int = 118287, num_boxes: int = 860001) -> dict:
    """Seconds to build a COCO dataset (parse JSON + validate + index) from a synthetic file
    of this size, the same from the index cache (large files only, see
    :mod:`frcnn.data.index_cache`; null when the file is below the threshold), and the bytes
    the index arrays hold."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"XDG_CACHE_HOME": tmp}):
        path = os.path.join(tmp, "instances_synthetic.json")
        write_synthetic_coco(path, num_images, num_boxes)
        json_bytes = os.path.getsize(path)
        seconds = []
        for _ in range(2):  # the first parses the JSON (and fills the cache), the second reads the cache
            start = time.perf_counter()
            dataset = COCODetection(path, tmp, transform=DetectionTransform((600,), 1000), train=True)
            seconds.append(time.perf_counter() - start)
    return {
        "num_images": len(dataset),
        "num_boxes": dataset.index.num_boxes,
        "json_mb": json_bytes / 2**20,
        "load_s": seconds[0],
        "cached_load_s": seconds[1] if json_bytes >= MIN_CACHED_BYTES else None,
        "index_bytes": dataset.index.nbytes(),
        "index_mb": dataset.index.nbytes() / 2**20,
    }
