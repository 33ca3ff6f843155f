"""TIDE error breakdown of box detections (Bolya et al., ECCV 2020), as the reference ``tidecv`` computes it.

Shape shorthand: D detections, G ground-truth objects, K object classes (labels 1..K).

:func:`tide_errors` matches a split's detections to its ground truth at a foreground IoU ``t_f``,
gives every detection that is not a true positive one error type, and reports for each type the
dAP, the AP after fixing every error of that type (an oracle) minus the base AP. The rules are
``tidecv``'s (``tidecv/quantify.py``, ``tidecv/errors/main_errors.py``, ``tidecv/ap.py``):

- matching, per image: the image's first ``max_dets`` detections by descending score, each in turn,
  take the same-class non-ignored object of highest IoU among the unmatched ones, when that IoU
  is >= ``t_f`` (COCO's greedy matching); an unmatched detection whose crowd IoU (intersection
  over the detection's area) with an ignored (difficult or crowd) object of its class is > ``t_f``
  is ignored: it is neither a true nor a false positive.
- error of an unmatched (or ignored) detection, the first test that holds, against the image's
  non-ignored objects, matched or not: no object in the image -> Background; Localisation:
  ``t_b <= max same-class IoU <= t_f``; Classification: ``max other-class IoU >= t_f``;
  Duplicate: ``max IoU with a matched same-class object >= t_f``; Background: ``max IoU <= t_b``;
  Both otherwise.
- fixing: a Classification / Localisation error whose object is unmatched becomes a true positive
  (of the object's class, with its own score) when it is the highest-scoring such error of that
  object (over both types); every other one is removed, as are Both, Duplicate and Background
  errors. Missed: a non-ignored object never matched and not the object of such a fixable error;
  fixing removes it from the positives. Special FP: every false positive removed; special FN:
  every unmatched non-ignored object removed from the positives.
- AP: per class, COCO's 101-point interpolated AP at ``t_f`` (``tidecv``'s ``APDataObject``,
  :func:`tide_ap`), 0 for a class left without positives; the mean is over the classes with
  non-ignored ground truth in the base (one left with neither positives nor detections after a
  fix drops out of that fix's mean, as in ``tidecv``).

Like ``tidecv``, a main error's dAP is clipped at 0 (a negative one is an artefact of the
101-point binning); the special ones are not. Unlike ``tidecv``, a class without ground truth
does not enter the mean with AP 0, and every image of the split is evaluated (``tidecv`` skips
the detections of images it has no ground truth for). Equal scores rank in input order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from frcnn.data.ground_truth import GroundTruth
from frcnn.evaluation.voc_eval import ClassPR, Detections

MAIN_ERRORS = ("cls", "loc", "both", "dupe", "bkg", "miss")
SPECIAL_ERRORS = ("fp", "fn")

# Error codes of a detection (NONE: a true positive).
NONE, CLS, LOC, BOTH, DUPE, BKG = 0, 1, 2, 3, 4, 5
_CODE = {"cls": CLS, "loc": LOC, "both": BOTH, "dupe": DUPE, "bkg": BKG}

# COCO's 101 recall points, written as tidecv writes them.
RECALL_POINTS = np.arange(101) / 100.0


def tide_ap(curve: ClassPR) -> float:
    """101-point interpolated AP (fraction) of a ranked class, ``tidecv``'s ``APDataObject.get_ap``."""
    if curve.num_positives == 0:
        return 0.0
    if len(curve.tp) == 0:
        return 0.0
    envelope = np.maximum.accumulate(curve.precision[::-1])[::-1]
    first = np.searchsorted(curve.recall, RECALL_POINTS, side="left")
    reached = first < len(envelope)
    return float(np.sum(envelope[first[reached]]) / len(RECALL_POINTS))


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO box IoU and crowd IoU (intersection over the area of ``boxes1``), both [N, M]."""
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(1, -1, 4)
    iw = np.minimum(boxes1[..., 2], boxes2[..., 2]) - np.maximum(boxes1[..., 0], boxes2[..., 0])
    ih = np.minimum(boxes1[..., 3], boxes2[..., 3]) - np.maximum(boxes1[..., 1], boxes2[..., 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(inter / (area1 + area2 - inter))
        crowd = np.nan_to_num(inter / area1)
    return iou, crowd


class _Outcome:
    """What matching and error assignment make of each detection and object (all numpy arrays).

    Detections: kept [D] (within the image's max_dets), tp [D], ignored [D], error [D] (code),
    target [D] (the object of a Cls/Loc error, else -1), fixable [D] (fixing that error gives a
    true positive). Objects: matched [G], missed [G].
    """

    def __init__(self, num_dets: int, num_gts: int):
        self.kept = np.zeros(num_dets, dtype=bool)
        self.tp = np.zeros(num_dets, dtype=bool)
        self.ignored = np.zeros(num_dets, dtype=bool)
        self.error = np.full(num_dets, NONE, dtype=np.int64)
        self.target = np.full(num_dets, -1, dtype=np.int64)
        self.fixable = np.zeros(num_dets, dtype=bool)
        self.matched = np.zeros(num_gts, dtype=bool)
        self.missed = np.zeros(num_gts, dtype=bool)


def _evaluate_image(dets: np.ndarray, gts: np.ndarray, ignore_gts: np.ndarray, data, out, t_f, t_b):
    """Match and classify one image: dets (ranked, kept), gts / ignore_gts: indices into the split."""
    d_labels, d_boxes = data["d_labels"][dets], data["d_boxes"][dets]
    out.kept[dets] = True
    if len(gts):
        iou, _ = box_iou(d_boxes, data["g_boxes"][gts])  # [n, m]
        same = d_labels[:, None] == data["g_labels"][gts][None, :]
        cls_iou = iou * same
        buffer = cls_iou.copy()
        for row in range(len(dets)):
            col = int(np.argmax(buffer[row]))
            if buffer[row, col] >= t_f:
                out.tp[dets[row]] = True
                out.matched[gts[col]] = True
                buffer[:, col] = 0.0
    for region in ignore_gts:
        _, crowd = box_iou(d_boxes, data["g_boxes"][region][None])
        hit = (crowd[:, 0] > t_f) & (d_labels == data["g_labels"][region]) & ~out.tp[dets]
        out.ignored[dets[hit]] = True

    negatives = np.nonzero(~out.tp[dets])[0]
    if len(gts) == 0:
        out.error[dets[negatives]] = BKG
        return
    used = out.matched[gts][None, :]
    other_iou = iou * ~same
    used_cls_iou = cls_iou * used
    best_score = {}  # object -> (score, detection) of its best fixable Cls/Loc error
    for row in negatives:
        det = dets[row]
        loc_col, cls_col = int(np.argmax(cls_iou[row])), int(np.argmax(other_iou[row]))
        if t_b <= cls_iou[row, loc_col] <= t_f:
            out.error[det], out.target[det] = LOC, gts[loc_col]
        elif other_iou[row, cls_col] >= t_f:
            out.error[det], out.target[det] = CLS, gts[cls_col]
        elif used_cls_iou[row].max() >= t_f:
            out.error[det] = DUPE
        elif iou[row].max() <= t_b:
            out.error[det] = BKG
        else:
            out.error[det] = BOTH
        target = out.target[det]
        if target >= 0 and not out.matched[target]:
            score = data["d_scores"][det]
            if target not in best_score or best_score[target][0] < score:
                best_score[target] = (score, det)
    for _, det in best_score.values():
        out.fixable[det] = True
    usable = np.isin(gts, list(best_score))
    out.missed[gts] = ~out.matched[gts] & ~usable


def _assign(dets: Detections, gts: GroundTruth, t_f: float, t_b: float, max_dets: int | None) -> _Outcome:
    """Run the per-image matching and error assignment over the split."""
    num_dets, num_gts = len(dets.labels), len(gts.labels)
    out = _Outcome(num_dets, num_gts)
    data = {
        "d_labels": np.asarray(dets.labels, dtype=np.int64),
        "d_scores": np.asarray(dets.scores, dtype=np.float64),
        "d_boxes": np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4),
        "g_labels": np.asarray(gts.labels, dtype=np.int64),
        "g_boxes": np.asarray(gts.boxes, dtype=np.float64).reshape(-1, 4),
    }
    ignore = np.asarray(gts.ignore, dtype=bool)
    # Detections by image, then descending score (stable); objects by image, in input order.
    det_order = np.lexsort((-data["d_scores"], dets.image_index))
    gt_order = np.argsort(gts.image_index, kind="stable")
    det_images = np.asarray(dets.image_index)[det_order]
    gt_images = np.asarray(gts.image_index)[gt_order]
    for image in np.union1d(det_images, gt_images):
        image_dets = det_order[np.searchsorted(det_images, image) : np.searchsorted(det_images, image, "right")]
        image_gts = gt_order[np.searchsorted(gt_images, image) : np.searchsorted(gt_images, image, "right")]
        if max_dets is not None:
            image_dets = image_dets[:max_dets]
        positives, regions = image_gts[~ignore[image_gts]], image_gts[ignore[image_gts]]
        if len(image_dets) == 0:
            out.missed[positives] = True
            continue
        _evaluate_image(image_dets, positives, regions, data, out, t_f, t_b)
    return out


def _class_aps(labels, scores, tp, positives, num_classes, ap_fn) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP [K] (index label-1) of the rows (labels, scores, tp) and positives [K + 1],
    and whether each class is empty (no positives and no rows)."""
    aps = np.zeros(num_classes)
    empty = np.zeros(num_classes, dtype=bool)
    for label in range(1, num_classes + 1):
        rows = np.nonzero(labels == label)[0]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        num_positives = int(positives[label])
        empty[label - 1] = num_positives <= 0 and len(rows) == 0
        if num_positives > 0:
            aps[label - 1] = ap_fn(ClassPR(scores=scores[rows], tp=tp[rows], num_positives=num_positives))
    return aps, empty


def tide_errors(
    dets: Detections,
    gts: GroundTruth,
    num_classes: int,
    ap_fn: Callable[[ClassPR], float] = tide_ap,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    max_dets: int | None = 100,
) -> dict:
    """TIDE's dAP of each error type (see the module docstring), as fractions.

    ap_fn: a class's AP from its ranked detections (``ClassPR``: scores descending, tp,
    num_positives > 0); default the 101-point COCO AP :func:`tide_ap`. max_dets: detections kept
    per image, the highest-scoring (None: all).
    Returns ``{"ap": base mAP, "main": {cls, loc, both, dupe, bkg, miss: dAP}, "special": {fp, fn:
    dAP}, "per_class": {"ap": [K], "main": {type: [K]}, "special": {type: [K]}}}``; the per-class
    arrays (index label-1) are NaN for a class without non-ignored ground truth.
    """
    out = _assign(dets, gts, fg_iou, bg_iou, max_dets)
    labels = np.asarray(dets.labels, dtype=np.int64)
    scores = np.asarray(dets.scores, dtype=np.float64)
    g_labels = np.asarray(gts.labels, dtype=np.int64)
    ignore = np.asarray(gts.ignore, dtype=bool)
    positives = np.bincount(g_labels[~ignore], minlength=num_classes + 1)
    has_gt = positives[1:] > 0

    counted = out.kept & ~out.ignored  # the detections the base AP ranks

    def score(rows: np.ndarray, row_labels: np.ndarray, row_tp: np.ndarray, row_positives: np.ndarray):
        aps, empty = _class_aps(row_labels, scores[rows], row_tp, row_positives, num_classes, ap_fn)
        aps = np.where(has_gt, aps, np.nan)
        mean_over = has_gt & ~empty
        return aps, float(np.mean(aps[mean_over])) if mean_over.any() else 0.0

    rows = np.nonzero(counted)[0]
    base_aps, base_ap = score(rows, labels[rows], out.tp[rows], positives)

    per_class_main, main = {}, {}
    for name in MAIN_ERRORS:
        fixed_positives = positives
        if name == "miss":
            rows = np.nonzero(counted)[0]
            row_labels, row_tp = labels[rows], out.tp[rows]
            fixed_positives = positives - np.bincount(g_labels[out.missed], minlength=num_classes + 1)
        else:
            code = _CODE[name]
            keep = counted & (out.error != code)
            # A fixed Cls / Loc error: the best one of an unmatched object, ignored or not.
            promoted = out.kept & (out.error == code) & out.fixable
            rows = np.nonzero(keep | promoted)[0]
            row_labels, row_tp = labels[rows].copy(), out.tp[rows] | promoted[rows]
            if name == "cls":
                moved = promoted[rows]
                row_labels[moved] = g_labels[out.target[rows[moved]]]
        aps, ap = score(rows, row_labels, row_tp, fixed_positives)
        main[name] = max(ap - base_ap, 0.0)
        per_class_main[name] = np.maximum(aps - base_aps, 0.0)

    # FP: only the true positives stay; FN: only the matched objects are positives.
    tp_rows = np.nonzero(counted & out.tp)[0]
    fp_aps, fp_ap = score(tp_rows, labels[tp_rows], out.tp[tp_rows], positives)
    rows = np.nonzero(counted)[0]
    unmatched = ~out.matched & ~ignore
    fn_positives = positives - np.bincount(g_labels[unmatched], minlength=num_classes + 1)
    fn_aps, fn_ap = score(rows, labels[rows], out.tp[rows], fn_positives)
    return {
        "ap": base_ap,
        "main": main,
        "special": {"fp": fp_ap - base_ap, "fn": fn_ap - base_ap},
        "per_class": {
            "ap": base_aps,
            "main": per_class_main,
            "special": {"fp": fp_aps - base_aps, "fn": fn_aps - base_aps},
        },
    }
