"""Evaluation costs (called by scripts/benchmark.py): scoring speed on a synthetic
VOC07-test-sized result set, and what the validation loss adds to the evaluation forward."""

from __future__ import annotations

import time

import statistics

import numpy as np
import torch

from frcnn.data import build_test_loader
from frcnn.evaluation.coco_eval import COCO_BACKENDS, coco_from_dict, coco_metrics
from frcnn.evaluation.results_io import predictions_from_detections
from frcnn.evaluation.val_loss import loss_targets
from frcnn.evaluation.voc_eval import Detections, GroundTruth, voc_metrics, voc_pr_curves
from frcnn.models import build_model


def synthetic_split(
    num_images: int, dets_per_image: int, num_classes: int, seed: int = 0
) -> tuple[GroundTruth, Detections]:
    """VOC07-test-like ground truth (1-6 objects per image on 500x375 images, ~10% difficult)
    and ``dets_per_image`` detections per image: jittered copies of the objects and random boxes."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, size=num_images)
    gt_image = np.repeat(np.arange(num_images), counts)
    xy = rng.uniform(0, 350, size=(len(gt_image), 2))
    wh = rng.uniform(10, 150, size=(len(gt_image), 2))
    gts = GroundTruth(
        image_index=gt_image,
        labels=rng.integers(1, num_classes + 1, size=len(gt_image)),
        boxes=np.concatenate([xy, xy + wh], axis=1),
        ignore=rng.random(len(gt_image)) < 0.1,
    )
    det_image = np.repeat(np.arange(num_images), dets_per_image)
    # per image: a few noisy copies of each object, the rest random boxes
    source = rng.integers(0, len(gt_image), size=len(det_image))
    near = rng.random(len(det_image)) < 0.3
    xy = rng.uniform(0, 350, (len(det_image), 2))
    det_boxes = np.concatenate([xy, xy + rng.uniform(10, 150, (len(det_image), 2))], axis=1)
    det_boxes[near] = gts.boxes[source[near]] + rng.normal(0, 8, (int(near.sum()), 4))
    det_image[near] = gt_image[source[near]]
    labels = rng.integers(1, num_classes + 1, size=len(det_image))
    labels[near] = gts.labels[source[near]]
    dets = Detections(det_image, labels, rng.random(len(det_image)), det_boxes)
    return gts, dets


def benchmark_eval(num_images: int = 4952, dets_per_image: int = 100, num_classes: int = 20, seed: int = 0,
                   coco_repeats: int = 2) -> dict:  # fmt: skip
    """Seconds to score ``num_images x dets_per_image`` detections with both VOC metrics
    (``voc_seconds``) and with each COCO backend (``coco_seconds[backend]``: the median of
    ``coco_repeats`` runs, interleaved, from the predictions.json list, made once beforehand as
    the evaluator does for its file); ``coco_speedup`` =
    pycocotools seconds / faster_coco_eval seconds. Both backends must give the same 12 numbers
    (``coco_max_abs_difference``)."""
    gts, dets = synthetic_split(num_images, dets_per_image, num_classes, seed)
    class_names = [f"class{k}" for k in range(1, num_classes + 1)]

    start = time.perf_counter()
    voc = voc_metrics(voc_pr_curves(dets, gts, num_classes), class_names)
    voc_seconds = time.perf_counter() - start

    image_ids = list(range(num_images))
    category_ids = list(range(1, num_classes + 1))
    gt_boxes = gts.boxes
    coco_gt = coco_from_dict({
        "images": [{"id": i, "height": 375, "width": 500} for i in image_ids],
        "categories": [{"id": c, "name": n} for c, n in zip(category_ids, class_names)],
        "annotations": [
            {"id": n + 1, "image_id": int(i), "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            for n, (i, c, (x1, y1, x2, y2)) in enumerate(zip(gts.image_index, gts.labels, gt_boxes.tolist()))
        ],
    })
    predictions = predictions_from_detections(dets, image_ids, category_ids)
    times, coco = {backend: [] for backend in COCO_BACKENDS}, {}
    for _ in range(coco_repeats):  # interleaved: a change in the machine's load hits both alike
        for backend in COCO_BACKENDS:
            start = time.perf_counter()
            coco[backend] = coco_metrics(coco_gt, predictions, backend=backend)
            times[backend].append(time.perf_counter() - start)
    coco_seconds = {backend: statistics.median(seconds) for backend, seconds in times.items()}
    reference, fast = coco["pycocotools"], coco["faster_coco_eval"]
    return {
        "num_images": num_images,
        "num_detections": len(dets.scores),
        "num_classes": num_classes,
        "voc_seconds": voc_seconds,
        "coco_seconds": coco_seconds,
        "coco_speedup": coco_seconds["pycocotools"] / coco_seconds["faster_coco_eval"],
        "coco_max_abs_difference": max(abs(reference[k] - fast[k]) for k in reference),
        "voc07_mAP": voc["voc07"]["mAP"],
        "voc_mAP": voc["voc"]["mAP"],
        "coco_AP": fast["AP"],
    }


def benchmark_val_loss(dataset_cfg, model_cfg, device: torch.device, batch_size: int = 4, num_batches: int = 5,
                       repeats: int = 3, seed: int = 0) -> dict:  # fmt: skip
    """Evaluation forward time without and with the validation loss (one forward for both).

    ``num_batches`` test batches of ``dataset_cfg`` are loaded once; a model of ``model_cfg`` with
    seeded random weights runs over all of them in eval mode, detections only then detections
    and losses, interleaved ``repeats`` times after one warm-up round. Medians of the seconds per
    pass; ``extra_fraction`` = with / without - 1.
    """
    loader = build_test_loader(dataset_cfg, batch_size, num_workers=0)
    batches = [batch.to(device) for _, batch in zip(range(num_batches), loader)]
    torch.manual_seed(seed)
    model = build_model(model_cfg, len(loader.dataset.class_names)).to(device).eval()
    targets = [loss_targets(batch.targets) for batch in batches]
    times = {"detections": [], "detections_and_losses": []}
    for round_ in range(1 + repeats):
        for name, seconds in times.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with torch.no_grad():
                for batch, batch_targets in zip(batches, targets):
                    if name == "detections":
                        model(batch.images, batch.image_sizes)
                    else:
                        model(batch.images, batch.image_sizes, batch_targets)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_ > 0:
                seconds.append(time.perf_counter() - start)
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    return {
        "images": sum(len(batch) for batch in batches),
        "batch_size": batch_size,
        "device": str(device),
        "median_seconds": medians,
        "extra_fraction": medians["detections_and_losses"] / medians["detections"] - 1,
        "times": times,
    }
