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

# COCO's foreground IoUs, 0.5:0.95 in steps of 0.05.
COCO_IOUS = np.linspace(0.5, 0.95, 10)


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
    """COCO box IoU and crowd IoU (intersection over the area of ``boxes1``) of boxes1 [..., 4]
    and boxes2 [..., 4], broadcast against each other (``(x1, y1, x2, y2)``)."""
    boxes1 = np.asarray(boxes1, dtype=np.float64)
    boxes2 = np.asarray(boxes2, dtype=np.float64)
    iw = np.minimum(boxes1[..., 2], boxes2[..., 2]) - np.maximum(boxes1[..., 0], boxes2[..., 0])
    ih = np.minimum(boxes1[..., 3], boxes2[..., 3]) - np.maximum(boxes1[..., 1], boxes2[..., 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(inter / (area1 + area2 - inter))
        crowd = np.nan_to_num(inter / area1)
    return iou, crowd


class ErrorAssignment:
    """Matching and TIDE error types of a split's detections at one foreground IoU.

    Detections, in input order: kept [D] (among the image's ``max_dets`` best), tp [D], ignored [D]
    (on an ignore region: neither a true nor a false positive), error [D] (a code, NONE for a true
    positive and for a detection not kept), target [D] (the object of a Cls / Loc error, else -1),
    fixable [D] (fixing that error gives a true positive), match [D] (the object of a true
    positive, else -1). Objects: matched [G] (by a true
    positive), missed [G] (TIDE's missed: non-ignored, never matched, claimed by no fixable error).
    """

    def __init__(self, num_dets: int, num_gts: int):
        self.kept = np.zeros(num_dets, dtype=bool)
        self.tp = np.zeros(num_dets, dtype=bool)
        self.ignored = np.zeros(num_dets, dtype=bool)
        self.error = np.full(num_dets, NONE, dtype=np.int64)
        self.target = np.full(num_dets, -1, dtype=np.int64)
        self.fixable = np.zeros(num_dets, dtype=bool)
        self.match = np.full(num_dets, -1, dtype=np.int64)
        self.matched = np.zeros(num_gts, dtype=bool)
        self.missed = np.zeros(num_gts, dtype=bool)


class _Pairs:
    """Every (kept detection, object of its image) pair of a split with its IoUs, built once and
    shared by the foreground thresholds.

    Kept detections are numbered by rank: by image, then by descending score (input order on
    ties), so each comes after the better ones of its image, as tidecv walks them. The P pairs are
    grouped by rank, each detection's objects in the image's input order (the order argmax ties
    break in); ``rank`` [P] and ``gt`` [P] name their two ends.
    """

    def __init__(self, dets: Detections, gts: GroundTruth, max_dets: int | None):
        scores = np.asarray(dets.scores, dtype=np.float64)
        det_images = np.asarray(dets.image_index, dtype=np.int64)
        order = np.lexsort((-scores, det_images))
        images = det_images[order]
        if max_dets is not None:
            order = order[np.arange(len(order)) - np.searchsorted(images, images) < max_dets]
        self.detection = order  # rank -> index of the detection
        self.num_gts = len(gts.labels)
        self.positive_gt = ~np.asarray(gts.ignore, dtype=bool)  # [G]

        gt_images = np.asarray(gts.image_index, dtype=np.int64)
        gt_order = np.argsort(gt_images, kind="stable")
        first = np.searchsorted(gt_images[gt_order], det_images[order], "left")
        count = np.searchsorted(gt_images[gt_order], det_images[order], "right") - first
        self.rank = np.repeat(np.arange(len(order)), count)
        within = np.arange(len(self.rank)) - np.repeat(np.cumsum(count) - count, count)
        self.gt = gt_order[np.repeat(first, count) + within]

        d_boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)[order][self.rank]
        g_boxes = np.asarray(gts.boxes, dtype=np.float64).reshape(-1, 4)[self.gt]
        self.iou, self.crowd = box_iou(d_boxes, g_boxes)
        self.same = np.asarray(dets.labels, dtype=np.int64)[order][self.rank] == np.asarray(gts.labels)[self.gt]
        self.positive = ~np.asarray(gts.ignore, dtype=bool)[self.gt]

        # Per detection with non-ignored objects in its image (a "segment" of positive pairs): the
        # threshold-free maxima of tidecv's error tests.
        self.pos = np.nonzero(self.positive)[0]
        pos_rank = self.rank[self.pos]
        starts = np.r_[True, pos_rank[1:] != pos_rank[:-1]] if len(pos_rank) else np.zeros(0, dtype=bool)
        self.segment_start = np.nonzero(starts)[0]
        self.segment_of = np.cumsum(starts) - 1  # [len(pos)] -> segment
        self.segment_rank = pos_rank[self.segment_start]
        iou = self.iou[self.pos]
        self.cls_iou = iou * self.same[self.pos]
        self.cls_max, self.cls_gt = self._segment_argmax(self.cls_iou)
        self.other_max, self.other_gt = self._segment_argmax(iou * ~self.same[self.pos])
        self.any_max = self._segment_max(iou)

    def _segment_max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.segment_start) if len(values) else values

    def _segment_argmax(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per segment, the max of ``values`` [len(pos)] and the object of its first max."""
        maxima = self._segment_max(values)
        at_max = np.nonzero(values == maxima[self.segment_of])[0]
        segment = self.segment_of[at_max]
        first = at_max[np.r_[True, segment[1:] != segment[:-1]]] if len(at_max) else at_max
        return maxima, self.gt[self.pos[first]]

    def match(self, t_f: float) -> tuple[np.ndarray, np.ndarray]:
        """Greedy matching at IoU ``t_f``: the object of each rank (-1: none) and matched [G].

        Each detection in rank order takes the unmatched same-class non-ignored object of highest
        IoU >= t_f. Computed in rounds over the candidate pairs: a detection whose best remaining
        object is no remaining candidate of any better unresolved detection gets it (the better
        ones can only take other objects), and each round resolves at least the best unresolved one.
        """
        candidate = np.nonzero(self.positive & self.same & (self.iou >= t_f))[0]
        candidate = candidate[np.lexsort((-self.iou[candidate], self.rank[candidate]))]  # stable: object order
        rank, gt = self.rank[candidate], self.gt[candidate]
        match = np.full(len(self.detection), -1, dtype=np.int64)
        done = np.zeros(len(self.detection), dtype=bool)
        taken = np.zeros(self.num_gts, dtype=bool)
        holder = np.zeros(self.num_gts, dtype=np.int64)
        while len(rank):
            best = np.r_[True, rank[1:] != rank[:-1]]  # each detection's first remaining pair
            objects, first = np.unique(gt, return_index=True)  # pairs are by rank: first = best claimant
            holder[objects] = rank[first]
            win = best & (holder[gt] == rank)
            match[rank[win]], done[rank[win]], taken[gt[win]] = gt[win], True, True
            alive = ~done[rank] & ~taken[gt]
            rank, gt = rank[alive], gt[alive]
        return match, taken


def assign_errors(
    dets: Detections, gts: GroundTruth, fg_iou: float = 0.5, bg_iou: float = 0.1, max_dets: int | None = 100
) -> ErrorAssignment:
    """Match the split's detections to its objects at ``fg_iou`` and give each detection that is
    not a true positive its TIDE error type (the rules in the module docstring)."""
    return _assign(_Pairs(dets, gts, max_dets), len(dets.labels), fg_iou, bg_iou)


def _assign(pairs: _Pairs, num_dets: int, t_f: float, t_b: float) -> ErrorAssignment:
    out = ErrorAssignment(num_dets, pairs.num_gts)
    detection = pairs.detection
    match, out.matched = pairs.match(t_f)
    tp = match >= 0
    out.kept[detection] = True
    out.tp[detection] = tp
    out.match[detection] = match

    region = np.nonzero(~pairs.positive & pairs.same & (pairs.crowd > t_f))[0]
    on_region = np.zeros(len(detection), dtype=bool)
    on_region[pairs.rank[region]] = True
    out.ignored[detection] = on_region & ~tp

    # Error tests of the negatives, in tidecv's order; a detection without a non-ignored object in
    # its image is Background.
    error = np.where(tp, NONE, BKG)
    target = np.full(len(detection), -1, dtype=np.int64)
    seg_rank = pairs.segment_rank
    used_max = pairs._segment_max(pairs.cls_iou * out.matched[pairs.gt[pairs.pos]])
    seg_error = np.full(len(seg_rank), BOTH, dtype=np.int64)
    seg_target = np.full(len(seg_rank), -1, dtype=np.int64)
    is_loc = (t_b <= pairs.cls_max) & (pairs.cls_max <= t_f)
    is_cls = ~is_loc & (pairs.other_max >= t_f)
    rest = ~is_loc & ~is_cls
    seg_error[rest & (pairs.any_max <= t_b)] = BKG
    seg_error[rest & (used_max >= t_f)] = DUPE
    seg_error[is_cls], seg_target[is_cls] = CLS, pairs.other_gt[is_cls]
    seg_error[is_loc], seg_target[is_loc] = LOC, pairs.cls_gt[is_loc]
    negative = ~tp[seg_rank]
    error[seg_rank[negative]] = seg_error[negative]
    target[seg_rank[negative]] = seg_target[negative]
    out.error[detection], out.target[detection] = error, target

    # The best (first-ranked) Cls / Loc error of each unmatched object is fixable; objects it
    # claims are not missed.
    claims = np.nonzero((target >= 0) & ~out.matched[np.maximum(target, 0)])[0]
    claimed, first = np.unique(target[claims], return_index=True)
    out.fixable[detection[claims[first]]] = True
    is_claimed = np.zeros(pairs.num_gts, dtype=bool)
    is_claimed[claimed] = True
    out.missed = pairs.positive_gt & ~out.matched & ~is_claimed
    return out


class _ClassAP:
    """Per-class AP of row subsets of one split's detections, ranked once: rows by label, then
    descending score (input order on ties), as each fix re-ranks them."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, num_classes: int, ap_fn, has_gt: np.ndarray):
        self.labels, self.scores = labels, scores
        self.by_class = np.lexsort((-scores, labels))
        self.num_classes, self.ap_fn, self.has_gt = num_classes, ap_fn, has_gt

    def __call__(self, rows: np.ndarray, tp: np.ndarray, positives: np.ndarray, labels: np.ndarray | None = None):
        """(per-class AP [K], NaN without ground truth; mAP) of the rows where bool [D] ``rows``
        holds, true positives where ``tp`` [D] does; positives [K + 1] per label; ``labels`` [D]:
        relabelled rows (re-ranked)."""
        if labels is None:
            ranked = self.by_class[rows[self.by_class]]
            labels = self.labels
        else:
            ranked = np.nonzero(rows)[0]
            ranked = ranked[np.lexsort((-self.scores[ranked], labels[ranked]))]
        bounds = np.searchsorted(labels[ranked], np.arange(1, self.num_classes + 2))
        aps = np.full(self.num_classes, np.nan)
        empty = np.zeros(self.num_classes, dtype=bool)
        for label in range(1, self.num_classes + 1):
            part = ranked[bounds[label - 1] : bounds[label]]
            num_positives = int(positives[label])
            empty[label - 1] = num_positives <= 0 and len(part) == 0
            if self.has_gt[label - 1]:
                curve = ClassPR(scores=self.scores[part], tp=tp[part], num_positives=num_positives)
                aps[label - 1] = self.ap_fn(curve) if num_positives > 0 else 0.0
        mean_over = self.has_gt & ~empty
        return aps, float(np.mean(aps[mean_over])) if mean_over.any() else 0.0


def tide_errors(
    dets: Detections,
    gts: GroundTruth,
    num_classes: int,
    ap_fn: Callable[[ClassPR], float] = tide_ap,
    fg_iou: float = 0.5,
    bg_iou: float = 0.1,
    max_dets: int | None = 100,
) -> dict:
    """TIDE's dAP of each error type at foreground IoU ``fg_iou`` (see the module docstring), as
    fractions.

    ap_fn: a class's AP from its ranked detections (``ClassPR``: scores descending, tp,
    num_positives > 0); default the 101-point COCO AP :func:`tide_ap`. max_dets: detections kept
    per image, the highest-scoring (None: all).
    Returns ``{"ap": base mAP, "main": {cls, loc, both, dupe, bkg, miss: dAP}, "special": {fp, fn:
    dAP}, "per_class": {"ap": [K], "main": {type: [K]}, "special": {type: [K]}}}``; the per-class
    arrays (index label-1) are NaN for a class without non-ignored ground truth.
    """
    return tide_breakdowns(dets, gts, num_classes, [fg_iou], ap_fn, bg_iou, max_dets)[0][0]


def tide_breakdowns(
    dets: Detections,
    gts: GroundTruth,
    num_classes: int,
    fg_ious,
    ap_fn: Callable[[ClassPR], float] = tide_ap,
    bg_iou: float = 0.1,
    max_dets: int | None = 100,
) -> list[tuple[dict, ErrorAssignment]]:
    """(:func:`tide_errors`'s result, the assignment it was computed from) at each foreground IoU
    of ``fg_ious`` (e.g. :data:`COCO_IOUS`), the pairs' IoUs computed once."""
    pairs = _Pairs(dets, gts, max_dets)
    labels = np.asarray(dets.labels, dtype=np.int64)
    g_labels = np.asarray(gts.labels, dtype=np.int64)
    has_gt = np.bincount(g_labels[pairs.positive_gt], minlength=num_classes + 1)[1:] > 0
    class_ap = _ClassAP(labels, np.asarray(dets.scores, dtype=np.float64), num_classes, ap_fn, has_gt)
    results = []
    for t_f in fg_ious:
        assignment = _assign(pairs, len(labels), t_f, bg_iou)
        results.append((_breakdown(assignment, class_ap, g_labels, pairs.positive_gt), assignment))
    return results


def _breakdown(out: ErrorAssignment, class_ap: _ClassAP, g_labels: np.ndarray, positive_gt: np.ndarray) -> dict:
    """The base AP and each oracle's dAP (overall and per class) of one assignment; positive_gt:
    the non-ignored objects [G]."""
    num_classes = class_ap.num_classes
    positives = np.bincount(g_labels[positive_gt], minlength=num_classes + 1)
    counted = out.kept & ~out.ignored  # the detections the base AP ranks
    base_aps, base_ap = class_ap(counted, out.tp, positives)

    per_class_main, main = {}, {}
    for name in MAIN_ERRORS:
        if name == "miss":
            fixed = positives - np.bincount(g_labels[out.missed], minlength=num_classes + 1)
            aps, ap = class_ap(counted, out.tp, fixed)
        else:
            code = _CODE[name]
            # A fixed Cls / Loc error: the best one of an unmatched object, ignored or not.
            promoted = out.kept & (out.error == code) & out.fixable
            rows = (counted & (out.error != code)) | promoted
            labels = None
            if name == "cls":
                labels = class_ap.labels.copy()
                labels[promoted] = g_labels[out.target[promoted]]
            aps, ap = class_ap(rows, out.tp | promoted, positives, labels)
        main[name] = max(ap - base_ap, 0.0)
        per_class_main[name] = np.maximum(aps - base_aps, 0.0)

    # FP: only the true positives stay; FN: only the matched objects are positives.
    fp_aps, fp_ap = class_ap(counted & out.tp, out.tp, positives)
    unmatched = np.bincount(g_labels[~out.matched & positive_gt], minlength=num_classes + 1)
    fn_aps, fn_ap = class_ap(counted, out.tp, positives - unmatched)
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
