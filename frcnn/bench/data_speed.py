"""Data-pipeline benchmarks.

- :func:`benchmark_data_pipeline` (section ``data``): training images/s through decode +
  transforms + collate with DataLoader workers, to compare with the model's training images/s.
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

from frcnn.data.batching import build_train_loader
from frcnn.data.coco import COCODetection
from frcnn.data.index_cache import MIN_CACHED_BYTES
from frcnn.data.transforms import DetectionTransform


def benchmark_data_pipeline(dataset_cfg, batch_size: int = 2, num_workers: int | None = None,
                            num_batches: int = 50) -> dict:  # fmt: skip
    """Training-loader throughput. The first batch (worker start-up) is not timed."""
    loader = build_train_loader(dataset_cfg, batch_size, seed=0, num_workers=num_workers)
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    seconds = time.perf_counter() - start
    return {
        "dataset": str(dataset_cfg.name),
        "batch_size": batch_size,
        "num_workers": loader.num_workers,
        "num_batches": num_batches,
        "seconds": seconds,
        "images_per_s": num_batches * batch_size / seconds,
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
