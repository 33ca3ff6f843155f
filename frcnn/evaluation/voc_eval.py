"""Pascal VOC detection AP, vectorised, with the official devkit's conventions.

Shape shorthand: D detections, G ground-truth objects, K object classes (labels 1..K).

Boxes come in the project convention, float ``(x1, y1, x2, y2)`` in continuous 0-based pixel
coordinates, and are converted back to the devkit's 1-based inclusive pixel boxes
``(x1 + 1, y1 + 1, x2, y2)`` before the devkit's ``+1`` width/height arithmetic is applied, so
the numbers are those of ``VOCevaldet.m`` on the same detections:

- detections of a class are ranked by descending score (stable: equal scores keep input order,
  as MATLAB's ``sort`` does);
- each detection is compared with every ground-truth object of its class in its image; the
  first object with the highest IoU is its candidate, whether or not it is already matched;
- IoU >= threshold with a not-yet-matched object: true positive; with an already matched one:
  false positive (duplicate); with a difficult (or crowd) object: ignored, neither; below the
  threshold or no object of the class in the image: false positive.

Because a detection's candidate does not depend on what was matched before it, the greedy
loop reduces to "the first-ranked detection of each (object) candidate pair wins", which is
computed for all classes at once with sorts and ``np.unique``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frcnn.data.ground_truth import GroundTruth

# The VOC2007 11-point thresholds exactly as the classic Python port builds them
# (0.30000000000000004 etc.), so recall values on a threshold compare as they do there.
VOC07_RECALL_THRESHOLDS = np.arange(0.0, 1.1, 0.1)

# Detections processed per IoU block: bounds memory at _IOU_CHUNK * max objects per image.
_IOU_CHUNK = 65536


@dataclass
class Detections:
    """Detections of a whole split, flattened over images.

    image_index: int64 [D], index of the image in the split.
    labels: int64 [D] in 1..K.
    scores: float [D].
    boxes: float [D, 4] (x1, y1, x2, y2), continuous 0-based original-image coordinates.
    """

    image_index: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray


@dataclass
class ClassPR:
    """Ranked outcome of one class's detections (ignored ones removed).

    scores: float [M] descending; tp: bool [M] (False means false positive);
    num_positives: number of non-ignored ground-truth objects of the class.
    """

    scores: np.ndarray
    tp: np.ndarray
    num_positives: int

    @property
    def recall(self) -> np.ndarray:
        """Recall after each ranked detection, float64 [M]."""
        return np.cumsum(self.tp) / max(self.num_positives, 1)

    @property
    def precision(self) -> np.ndarray:
        """Precision after each ranked detection, float64 [M]."""
        return np.cumsum(self.tp) / np.arange(1, len(self.tp) + 1)


def devkit_boxes(boxes: np.ndarray) -> np.ndarray:
    """Project boxes [N, 4] (continuous 0-based) -> devkit boxes [N, 4] (1-based inclusive)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2] + 1.0, boxes[..., 2:]], axis=-1)


def devkit_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Devkit IoU of devkit boxes, broadcasting ``boxes1 [..., 4]`` against ``boxes2 [..., 4]``.

    Widths and heights are inclusive pixel counts (``x2 - x1 + 1``); no overlap gives 0.
    """
    iw = np.minimum(boxes1[..., 2], boxes2[..., 2]) - np.maximum(boxes1[..., 0], boxes2[..., 0]) + 1.0
    ih = np.minimum(boxes1[..., 3], boxes2[..., 3]) - np.maximum(boxes1[..., 1], boxes2[..., 1]) + 1.0
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area1 = (boxes1[..., 2] - boxes1[..., 0] + 1.0) * (boxes1[..., 3] - boxes1[..., 1] + 1.0)
    area2 = (boxes2[..., 2] - boxes2[..., 0] + 1.0) * (boxes2[..., 3] - boxes2[..., 1] + 1.0)
    return inter / (area1 + area2 - inter)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from a ranked PR curve (recall non-decreasing), as the devkit computes it.

    use_07_metric: VOC2007 mean of the best precision at recall >= 0, 0.1, ..., 1 (11 points);
    otherwise the VOC2010+ area under the monotone (right-to-left running max) PR curve.
    """
    if len(recall) == 0:
        return 0.0
    # envelope[i] = max(precision[i:]): the best precision at recall >= recall[i]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if use_07_metric:
        first = np.searchsorted(recall, VOC07_RECALL_THRESHOLDS, side="left")
        reached = first < len(recall)
        return float(np.sum(envelope[first[reached]]) / 11.0)
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def _candidate_objects(dets: Detections, gts: GroundTruth, num_classes: int):
    """For each detection, its best-IoU object of the same class and image.

    Returns (candidate int64 [D] index into gts or -1 when the image has no such object,
    overlap float64 [D]).
    """
    num_dets = len(dets.labels)
    candidate = np.full(num_dets, -1, dtype=np.int64)
    overlap = np.zeros(num_dets, dtype=np.float64)
    if len(gts.labels) == 0 or num_dets == 0:
        return candidate, overlap

    # Group objects by (image, class); a stable sort keeps file order inside a group so that
    # argmax picks the first of equally overlapping objects, as the devkit's loop does.
    gt_key = gts.image_index.astype(np.int64) * num_classes + (gts.labels - 1)
    order = np.argsort(gt_key, kind="stable")
    groups, group_start, group_size = np.unique(gt_key[order], return_index=True, return_counts=True)
    slot = np.arange(len(order)) - np.repeat(group_start, group_size)
    group_of = np.repeat(np.arange(len(groups)), group_size)

    # Padded per-group tables: (num_groups, max objects per group)
    width = int(group_size.max())
    padded_boxes = np.zeros((len(groups), width, 4), dtype=np.float64)
    padded_index = np.full((len(groups), width), -1, dtype=np.int64)
    padded_boxes[group_of, slot] = devkit_boxes(gts.boxes[order])
    padded_index[group_of, slot] = order

    det_key = dets.image_index.astype(np.int64) * num_classes + (dets.labels - 1)
    pos = np.minimum(np.searchsorted(groups, det_key), len(groups) - 1)
    has_group = groups[pos] == det_key
    det_rows = np.nonzero(has_group)[0]
    det_boxes = devkit_boxes(dets.boxes)
    for start in range(0, len(det_rows), _IOU_CHUNK):
        rows = det_rows[start : start + _IOU_CHUNK]
        group_rows = pos[rows]
        iou = devkit_iou(det_boxes[rows, None, :], padded_boxes[group_rows])  # (n, width)
        iou[padded_index[group_rows] < 0] = -1.0  # padding never wins
        best = iou.argmax(axis=1)
        candidate[rows] = padded_index[group_rows, best]
        overlap[rows] = iou[np.arange(len(rows)), best]
    return candidate, overlap


def voc_pr_curves(dets: Detections, gts: GroundTruth, num_classes: int, iou_threshold: float = 0.5) -> list[ClassPR]:
    """Greedy devkit matching of all classes at once -> one ClassPR per class (index label-1)."""
    candidate, overlap = _candidate_objects(dets, gts, num_classes)

    # Rank by class, then descending score; lexsort is stable, so ties keep input order.
    order = np.lexsort((-np.asarray(dets.scores, dtype=np.float64), dets.labels))
    candidate, overlap = candidate[order], overlap[order]
    labels, scores = dets.labels[order], np.asarray(dets.scores)[order]

    hit = (candidate >= 0) & (overlap >= iou_threshold)
    ignored = np.zeros_like(hit)
    ignored[hit] = gts.ignore[candidate[hit]]
    claim = hit & ~ignored
    # Among the detections claiming an object, only the first-ranked one is a true positive.
    tp = np.zeros(len(order), dtype=bool)
    claim_rows = np.nonzero(claim)[0]
    _, first = np.unique(candidate[claim_rows], return_index=True)
    tp[claim_rows[first]] = True

    kept = ~ignored
    labels, scores, tp = labels[kept], scores[kept], tp[kept]
    bounds = np.searchsorted(labels, np.arange(1, num_classes + 2))
    positives = np.bincount(gts.labels[~gts.ignore], minlength=num_classes + 1)
    return [
        ClassPR(scores=scores[start:end], tp=tp[start:end], num_positives=int(positives[label]))
        for label, start, end in zip(range(1, num_classes + 1), bounds[:-1], bounds[1:])
    ]


def voc_metrics(curves: list[ClassPR], class_names: list[str]) -> dict:
    """metrics.json's ``voc07`` and ``voc`` entries from per-class PR curves.

    A class without non-ignored ground truth has no defined AP: it is reported as -1 (the COCO
    convention) and left out of the mean.
    """
    metrics = {}
    for name, use_07 in (("voc07", True), ("voc", False)):
        ap = {}
        for class_name, curve in zip(class_names, curves):
            ap[class_name] = voc_ap(curve.recall, curve.precision, use_07) if curve.num_positives else -1.0
        defined = [value for value in ap.values() if value >= 0]
        metrics[name] = {"mAP": float(np.mean(defined)) if defined else 0.0, "AP": ap}
    return metrics
