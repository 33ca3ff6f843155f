"""Confusion matrix of a split's detections (classes + background), from faster-coco-eval's matching.

Shape shorthand: D detections, G ground-truth objects, K object classes (labels 1..K).

The detections scoring at least the threshold are matched to the objects class-agnostically, by
faster-coco-eval's COCOeval (``useCats=0``, one IoU threshold, ``extra_calc``: its ``matched``
pairs): in descending score, each detection takes the unmatched object it overlaps most with IoU
>= the threshold, as COCO matches within a class. Difficult and crowd objects are ignore regions,
as the VOC metric treats them: a detection on one (COCO's crowd overlap, intersection over the
detection's area) is left out, and one that nothing found is no miss.

``counts[i, j]`` (rows: ground truth, columns: prediction, index K: background): an object of class
i+1 found by a detection of class j+1; ``counts[i, K]``: an object of class i+1 that no detection
found (missed); ``counts[K, j]``: a detection of class j+1 on no object (a false positive on the
background). ``counts[K, K]`` is 0.
"""

from __future__ import annotations

import logging

import faster_coco_eval
import numpy as np

from frcnn.data.ground_truth import GroundTruth
from frcnn.evaluation.voc_eval import Detections

logger = logging.getLogger(__name__)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 2:] -= boxes[:, :2]
    return boxes


def _matches(dets: Detections, gts: GroundTruth, iou_threshold: float) -> np.ndarray:
    """faster-coco-eval's class-agnostic matching: pairs int64 [M, 2] (detection, object)."""
    images = np.union1d(np.asarray(dets.image_index), np.asarray(gts.image_index)).astype(np.int64)
    gt_boxes = _xywh(gts.boxes)
    annotations = [
        {"id": k + 1, "image_id": image, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": int(crowd)}
        for k, (image, box, crowd) in enumerate(zip(gts.image_index.tolist(), gt_boxes.tolist(), gts.ignore.tolist()))
    ]
    gt = faster_coco_eval.COCO(
        {"images": [{"id": int(i)} for i in images], "annotations": annotations, "categories": [{"id": 1}]},
        print_function=logger.debug,
    )
    # loadRes numbers the results 1..D in list order
    results = [
        {"image_id": image, "category_id": 1, "bbox": box, "score": score}
        for image, box, score in zip(dets.image_index.tolist(), _xywh(dets.boxes).tolist(), dets.scores.tolist())
    ]
    evaluator = faster_coco_eval.COCOeval_faster(
        gt, gt.loadRes(results), iouType="bbox", extra_calc=True, print_function=logger.debug
    )
    per_image = np.bincount(np.asarray(dets.image_index, dtype=np.int64) - images.min()) if len(results) else [0]
    params = evaluator.params
    params.useCats, params.iouThrs = 0, [iou_threshold]
    params.areaRng, params.areaRngLbl = [[0.0, 1e10]], ["all"]
    params.maxDets = [max(int(np.max(per_image)), 1)]
    evaluator.evaluate()
    evaluator.accumulate()
    pairs = [key.split("_") for key in evaluator.eval["matched"]]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2) - 1


def confusion_matrix(
    dets: Detections, gts: GroundTruth, num_classes: int, iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> np.ndarray:
    """The int64 [K + 1, K + 1] confusion counts (module docstring) of the detections scoring at
    least ``score_threshold``, matched at ``iou_threshold``."""
    keep = np.asarray(dets.scores) >= score_threshold
    dets = Detections(dets.image_index[keep], dets.labels[keep], np.asarray(dets.scores)[keep], dets.boxes[keep])
    pairs = _matches(dets, gts, iou_threshold) if len(dets.labels) or len(gts.labels) else np.zeros((0, 2), int)
    det, gt = pairs[:, 0], pairs[:, 1]
    ignore = np.asarray(gts.ignore, dtype=bool)
    found = ~ignore[gt]
    background = num_classes  # the last row and column
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    np.add.at(counts, (gts.labels[gt[found]] - 1, dets.labels[det[found]] - 1), 1)
    det_matched = np.zeros(len(dets.labels), dtype=bool)
    det_matched[det] = True
    gt_matched = np.zeros(len(gts.labels), dtype=bool)
    gt_matched[gt] = True
    counts[:background, background] = np.bincount(gts.labels[~gt_matched & ~ignore] - 1, minlength=num_classes)
    counts[background, :background] = np.bincount(dets.labels[~det_matched] - 1, minlength=num_classes)
    return counts


def normalized_rows(counts: np.ndarray) -> np.ndarray:
    """Each row of ``counts`` divided by its sum (a row without counts stays 0)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)
