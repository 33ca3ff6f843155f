"""Section ``analysis``: the error analysis of a synthetic COCO-sized result set, timed against
faster-coco-eval's scoring of the same results (interleaved, in one process)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from frcnn.bench.timing import interleaved_times, medians
from frcnn.data.ground_truth import GroundTruth, coco_ground_truth
from frcnn.evaluation.analysis import analyze_split, objects_by_size
from frcnn.evaluation.coco_eval import coco_evaluation
from frcnn.evaluation.report import write_report
from frcnn.evaluation.results_io import predictions_from_detections
from frcnn.evaluation.voc_eval import Detections, voc_metrics, voc_pr_curves

IMAGE_SIZE = (480, 640)  # (h, w), COCO's typical image


def synthetic_coco_split(
    num_images: int, objects_per_image: float, dets_per_image: int, num_classes: int, seed: int = 0
) -> tuple[GroundTruth, Detections]:
    """COCO-like ground truth (Poisson ``objects_per_image`` per image, sizes log-uniform from 8 to
    400 px, 1% crowd regions) on 640x480 images and ``dets_per_image`` detections per image: a
    detector's mix of good, poorly located, relabelled, duplicate and background boxes; scores
    higher for the better boxes."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE_SIZE
    counts = rng.poisson(objects_per_image, size=num_images)
    gt_image = np.repeat(np.arange(num_images), counts)
    size = np.exp(rng.uniform(np.log(8), np.log(400), (len(gt_image), 2)))
    corner = rng.uniform(0, 1, (len(gt_image), 2)) * np.maximum([width, height] - size, 1)
    gts = GroundTruth(
        image_index=gt_image,
        labels=rng.integers(1, num_classes + 1, size=len(gt_image)),
        boxes=np.concatenate([corner, corner + size], axis=1),
        ignore=rng.random(len(gt_image)) < 0.01,
        iscrowd=None,
    )
    gts.iscrowd = gts.ignore.copy()
    det_image = np.repeat(np.arange(num_images), dets_per_image)
    source = rng.integers(0, max(len(gt_image), 1), size=len(det_image))
    near = (rng.random(len(det_image)) < 0.3) & (counts[det_image] > 0)
    # a detection near an object comes from an object of its own image
    first = np.cumsum(counts) - counts
    source[near] = first[det_image[near]] + rng.integers(0, np.maximum(counts[det_image[near]], 1))
    wh = np.exp(rng.uniform(np.log(8), np.log(400), (len(det_image), 2)))
    xy = rng.uniform(0, 1, (len(det_image), 2)) * np.maximum([width, height] - wh, 1)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    jitter = rng.normal(0, 1, (int(near.sum()), 4)) * rng.choice([0.03, 0.15], (int(near.sum()), 1))
    object_boxes = gts.boxes[source[near]]
    scale = np.repeat(object_boxes[:, 2:] - object_boxes[:, :2], 2, axis=0).reshape(-1, 4)
    boxes[near] = object_boxes + jitter * scale
    labels = rng.integers(1, num_classes + 1, size=len(det_image))
    labels[near] = np.where(rng.random(int(near.sum())) < 0.85, gts.labels[source[near]], labels[near])
    scores = rng.beta(1, 4, len(det_image))
    scores[near] = rng.beta(4, 2, int(near.sum()))
    return gts, Detections(det_image, labels, scores, boxes)


def benchmark_analysis(
    num_images: int = 5000,
    objects_per_image: float = 7.3,
    dets_per_image: int = 100,
    num_classes: int = 80,
    repeats: int = 1,
    seed: int = 0,
) -> dict:
    """Seconds of faster-coco-eval's scoring of the synthetic results (``scoring_seconds``: from
    the predictions.json list, as the evaluation scores a file) and of the analysis of them
    (``analysis_seconds``: :func:`~frcnn.evaluation.analysis.analyze_split` with the TIDE breakdown
    at 0.5 and 0.5:0.95, the confusion matrix, the thresholds and the worst images, then the
    report's figures and page, written to a temporary folder), medians of ``repeats``
    interleaved runs; ``analysis_ratio`` = analysis / scoring."""
    gts, dets = synthetic_coco_split(num_images, objects_per_image, dets_per_image, num_classes, seed)
    class_names = [f"class{k}" for k in range(1, num_classes + 1)]
    category_ids = list(range(1, num_classes + 1))
    images = [{"id": i, "height": IMAGE_SIZE[0], "width": IMAGE_SIZE[1]} for i in range(num_images)]
    coco_gt = coco_ground_truth(gts, images, category_ids, class_names)
    predictions = predictions_from_detections(dets, list(range(num_images)), category_ids)
    # what the evaluation hands the analysis: its metrics and VOC PR curves
    curves = voc_pr_curves(dets, gts, num_classes)
    metrics = voc_metrics(curves, class_names)
    metrics["coco"], per_category = coco_evaluation(coco_gt, predictions)
    metrics["coco_per_class"] = {name: per_category[c] for name, c in zip(class_names, category_ids)}
    sizes = objects_by_size(coco_gt, class_names, category_ids)
    result = {}

    def score() -> None:
        coco_evaluation(coco_gt, predictions)

    def analyse() -> None:
        analysis, _ = analyze_split(dets, gts, class_names, metrics, curves, sizes, num_images)
        with tempfile.TemporaryDirectory() as folder:
            write_report(analysis, [], Path(folder) / "report")
        result["analysis"] = analysis

    seconds = medians(interleaved_times({"run": {"scoring": score, "analysis": analyse}}, 0, repeats))["run"]
    tide = result["analysis"]["tide"]
    return {
        "num_images": num_images,
        "num_objects": int(len(gts.labels)),
        "num_detections": int(len(dets.labels)),
        "num_classes": num_classes,
        "scoring_seconds": seconds["scoring"],
        "analysis_seconds": seconds["analysis"],
        "analysis_ratio": seconds["analysis"] / seconds["scoring"],
        "coco_AP": metrics["coco"]["AP"],
        "tide": tide,
    }
