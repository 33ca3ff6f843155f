"""Why a detector fails: the analysis.json of a split's detections, and its worst images.

Shape shorthand: D detections, G ground-truth objects, K object classes (labels 1..K).

:func:`analyze_split` puts together, from what the metrics already computed (the VOC PR curves
and COCO's per-class APs) and from :mod:`~frcnn.evaluation.tide`, :mod:`~frcnn.evaluation.confusion`
and :mod:`~frcnn.evaluation.thresholds`:

- ``tide``: TIDE's dAP of each error type at IoU ``iou_threshold`` (0.5), and ``tide_coco`` their
  mean over COCO's IoUs 0.5:0.95 (the background IoU stays 0.1);
- ``suggested_score_threshold`` and ``f1_curve``: where the F1 averaged over the classes peaks;
- ``confusion_matrix`` at IoU ``iou_threshold`` and that score threshold (or ``score_threshold``);
- ``per_class``: objects and detections, AP (VOC07, VOC, COCO), COCO AP and object counts by
  size, the F1-optimal threshold, the PR curve and the class's TIDE errors;
- ``worst_images``: the images with the most errors a deployed model makes at that threshold
  (detections at or above it that are no true positive, by TIDE type, and objects no such
  detection found), with the drawing of each (:func:`draw_worst_images`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frcnn.data.ground_truth import GroundTruth
from frcnn.data.image_io import read_image
from frcnn.evaluation.confusion import confusion_matrix, normalized_rows
from frcnn.evaluation.results_io import detections_from_predictions
from frcnn.evaluation.thresholds import best_f1, f1_curves
from frcnn.evaluation.tide import BKG, BOTH, CLS, COCO_IOUS, DUPE, LOC, MAIN_ERRORS, SPECIAL_ERRORS, tide_breakdowns
from frcnn.evaluation.voc_eval import ClassPR, Detections
from frcnn.utils.visualize import draw_error_types

# COCOeval's object-size buckets (area in pixels, both ends included, as COCOeval compares them).
SIZE_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
ERROR_NAMES = {CLS: "cls", LOC: "loc", BOTH: "both", DUPE: "dupe", BKG: "bkg"}
WORST_IMAGE_MIN_SIDE = 480
PR_CURVE_POINTS = 201  # a class's PR curve is stored at most at this many points


@dataclass
class WorstImage:
    """One of the worst images: its index in the split, its error count and what to draw.

    gt_boxes [M, 4] / gt_missed [M]: its non-ignored objects, and which of them no detection at
    the threshold found. boxes [N, 4], kinds [N] (``tp`` or an error name), captions [N]: its
    detections at or above the threshold, best first. Boxes (x1, y1, x2, y2) in image pixels.
    """

    index: int
    weight: int
    errors: dict
    gt_boxes: np.ndarray
    gt_missed: np.ndarray
    boxes: np.ndarray
    kinds: list
    captions: list


def _tide_entry(result: dict) -> dict:
    return {"ap": result["ap"], **result["main"], **result["special"]}


def _mean_entry(results: list[dict]) -> dict:
    entries = [_tide_entry(result) for result in results]
    return {key: float(np.mean([entry[key] for entry in entries])) for key in entries[0]}


def _class_tide(result: dict, k: int) -> dict | None:
    if np.isnan(result["per_class"]["ap"][k]):
        return None
    errors = {name: float(result["per_class"]["main"][name][k]) for name in MAIN_ERRORS}
    errors.update({name: float(result["per_class"]["special"][name][k]) for name in SPECIAL_ERRORS})
    return errors


def _pr_points(curve: ClassPR) -> dict:
    """The ranked PR curve, thinned to at most PR_CURVE_POINTS points (the last one kept)."""
    recall, precision = curve.recall, curve.precision
    if len(recall) > PR_CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(recall) - 1, PR_CURVE_POINTS).round().astype(int))
        recall, precision = recall[keep], precision[keep]
    return {"recall": recall.tolist(), "precision": precision.tolist()}


def objects_by_size(coco_gt, class_names: list[str], category_ids: list[int]) -> dict:
    """Objects per class and COCO size bucket, counted as COCOeval counts its positives: the
    non-crowd annotations of ``coco_gt`` by their ``area``."""
    counts = {name: dict.fromkeys(SIZE_RANGES, 0) for name in class_names}
    name_of = dict(zip(category_ids, class_names))
    for annotation in coco_gt.dataset["annotations"]:
        name = name_of.get(annotation["category_id"])
        if name is None or annotation.get("iscrowd", 0):
            continue
        for size, (low, high) in SIZE_RANGES.items():
            counts[name][size] += int(low <= annotation["area"] <= high)
    return counts


def _worst_images(dets: Detections, gts: GroundTruth, assignment, class_names, threshold: float, count: int):
    """The ``count`` images with the most errors at ``threshold`` (ties: split order)."""
    scores = np.asarray(dets.scores, dtype=np.float64)
    confident = assignment.kept & ~assignment.ignored & (scores >= threshold)
    wrong = confident & ~assignment.tp
    found = np.zeros(len(gts.labels), dtype=bool)
    found[assignment.match[confident & assignment.tp]] = True
    positive = ~np.asarray(gts.ignore, dtype=bool)
    missed = positive & ~found
    num_images = int(max(np.max(dets.image_index, initial=-1), np.max(gts.image_index, initial=-1))) + 1
    weight = np.bincount(dets.image_index[wrong], minlength=num_images) + np.bincount(
        gts.image_index[missed], minlength=num_images
    )
    order = np.argsort(-weight, kind="stable")
    worst = []
    for index in order[:count]:
        if weight[index] == 0:
            break
        rows = np.nonzero(confident & (dets.image_index == index))[0]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        objects = np.nonzero(positive & (gts.image_index == index))[0]
        kinds = ["tp" if assignment.tp[r] else ERROR_NAMES[int(assignment.error[r])] for r in rows]
        errors = {name: kinds.count(name) for name in ERROR_NAMES.values()}
        errors["miss"] = int(missed[objects].sum())
        captions = [
            f"{class_names[dets.labels[r] - 1]} {scores[r]:.2f}" + ("" if kind == "tp" else f" [{kind}]")
            for r, kind in zip(rows, kinds)
        ]
        worst.append(
            WorstImage(
                int(index),
                int(weight[index]),
                errors,
                gts.boxes[objects],
                missed[objects],
                dets.boxes[rows],
                kinds,
                captions,
            )
        )
    return worst


def analyze_split(
    dets: Detections,
    gts: GroundTruth,
    class_names: list[str],
    metrics: dict,
    pr_curves: list[ClassPR],
    sizes: dict,
    num_images: int,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    coco_ious: bool = True,
    num_worst: int = 12,
) -> tuple[dict, list[WorstImage]]:
    """The analysis.json dict (module docstring) and the worst images of a scored split.

    dets / gts: the split's detections and objects; metrics / pr_curves: what
    :func:`~frcnn.evaluation.evaluator.score_predictions` made of them (``voc07``, ``voc`` and
    ``coco_per_class``; the VOC PR curves, index label-1); sizes: :func:`objects_by_size`.
    score_threshold: the confusion matrix's and the worst images' (None: the suggested one).
    coco_ious: also the TIDE mean over IoU 0.5:0.95 (ten more matchings). num_worst: images kept.
    """
    num_classes = len(class_names)
    ious = [iou_threshold, *(t for t in COCO_IOUS if t != iou_threshold)] if coco_ious else [iou_threshold]
    breakdowns = tide_breakdowns(dets, gts, num_classes, ious)
    tide, assignment = breakdowns[0]
    coco_results = [result for (result, _), t in zip(breakdowns, ious) if t in COCO_IOUS]

    f1 = f1_curves(pr_curves)
    suggested = f1["suggested"]
    threshold = score_threshold if score_threshold is not None else (suggested or {"threshold": 0.5})["threshold"]
    counts = confusion_matrix(dets, gts, num_classes, iou_threshold, threshold)
    det_counts = np.bincount(dets.labels, minlength=num_classes + 1)
    worst = _worst_images(dets, gts, assignment, class_names, threshold, num_worst) if num_worst else []

    per_class = {}
    for k, name in enumerate(class_names):
        coco = metrics["coco_per_class"][name]
        per_class[name] = {
            "num_objects": int(pr_curves[k].num_positives),
            "num_detections": int(det_counts[k + 1]),
            "ap": {"voc07": metrics["voc07"]["AP"][name], "voc": metrics["voc"]["AP"][name], "coco": coco["AP"]},
            "ap_by_size": {"small": coco["APs"], "medium": coco["APm"], "large": coco["APl"]},
            "objects_by_size": sizes[name],
            "f1": best_f1(pr_curves[k]),
            "pr_curve": _pr_points(pr_curves[k]),
            "tide": _class_tide(tide, k),
        }
    analysis = {
        "iou_threshold": iou_threshold,
        "num_images": num_images,
        "num_objects": int((~np.asarray(gts.ignore, dtype=bool)).sum()),
        "num_detections": len(dets.labels),
        "tide": _tide_entry(tide),
        "tide_coco": _mean_entry(coco_results) if coco_ious else None,
        "confusion_matrix": {
            "classes": [*class_names, "background"],
            "counts": counts.tolist(),
            "normalized": normalized_rows(counts).tolist(),
            "iou_threshold": iou_threshold,
            "score_threshold": threshold,
        },
        "suggested_score_threshold": suggested,
        "f1_curve": {
            "thresholds": f1["thresholds"].tolist(),
            "f1": f1["mean"].tolist(),
            "per_class": {name: f1["per_class"][k].tolist() for k, name in enumerate(class_names)},
        },
        "per_class": per_class,
        "worst_images": [],
    }
    return analysis, worst


def analyze(dataset, predictions: list[dict], metrics: dict, pr_curves: list[ClassPR], **options):
    """:func:`analyze_split` of ``predictions`` (predictions.json dicts) on ``dataset`` (the DATA
    API: ``image_ids``, ``category_ids``, ``class_names``, ``ground_truth()``, ``coco_gt()``), with
    the worst images' ids filled in. options: those of :func:`analyze_split`."""
    dets = detections_from_predictions(predictions, dataset.image_ids, dataset.category_ids)
    sizes = objects_by_size(dataset.coco_gt(), dataset.class_names, dataset.category_ids)
    analysis, worst = analyze_split(
        dets, dataset.ground_truth(), dataset.class_names, metrics, pr_curves, sizes, len(dataset.image_ids), **options
    )
    analysis["worst_images"] = [
        {
            "image_id": dataset.image_ids[image.index],
            "file": worst_image_file(rank),
            "weight": image.weight,
            "errors": image.errors,
        }
        for rank, image in enumerate(worst, start=1)
    ]
    return analysis, worst


def worst_image_file(rank: int) -> str:
    """The report's file name of the ``rank``-th worst image (1-based)."""
    return f"worst_{rank:02d}.png"


def draw_worst_images(dataset, worst: list[WorstImage]) -> list[tuple[str, np.ndarray]]:
    """Each worst image drawn (:func:`frcnn.utils.visualize.draw_error_types`) as (file name, RGB
    uint8 [H, W, 3]); ``dataset.image_path(i)`` gives the files."""
    drawn = []
    for rank, image in enumerate(worst, start=1):
        picture = read_image(dataset.image_path(image.index))
        drawn.append(
            (
                worst_image_file(rank),
                draw_error_types(
                    picture,
                    image.gt_boxes,
                    image.gt_missed,
                    image.boxes,
                    image.kinds,
                    image.captions,
                    WORST_IMAGE_MIN_SIDE,
                ),
            )
        )
    return drawn


def format_analysis_table(analysis: dict) -> str:
    """The headline: TIDE's dAP per error type (percentage points, as TIDE prints them) at IoU 0.5
    and over 0.5:0.95, the suggested threshold and the largest off-diagonal confusions."""
    keys = (*MAIN_ERRORS, *SPECIAL_ERRORS)
    lines = [f"{'TIDE dAP (points)':<18}{'AP':>6} " + "".join(f"{key:>6}" for key in keys)]
    rows = [("IoU 0.5", analysis["tide"]), ("IoU 0.5:0.95", analysis["tide_coco"])]
    for name, entry in rows:
        if entry is not None:
            lines.append(f"{name:<18}{100 * entry['ap']:6.1f} " + "".join(f"{100 * entry[k]:6.1f}" for k in keys))
    suggested = analysis["suggested_score_threshold"]
    if suggested is not None:
        lines.append(
            f"suggested score threshold {suggested['threshold']:.2f}: mean F1 {suggested['f1']:.3f} "
            f"(precision {suggested['precision']:.3f}, recall {suggested['recall']:.3f})"
        )
    confusion = analysis["confusion_matrix"]
    counts, classes = np.asarray(confusion["counts"]), confusion["classes"]
    off = [(counts[i, j], i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j and counts[i, j]]
    worst = ", ".join(f"{classes[i]} -> {classes[j]} {n}" for n, i, j in sorted(off, key=lambda t: -t[0])[:3])
    lines.append(
        f"confusions at IoU {confusion['iou_threshold']:g}, score >= {confusion['score_threshold']:.2f} "
        f"(ground truth -> prediction): {worst or 'none'}"
    )
    return "\n".join(lines)


def metrics_summary(analysis: dict) -> dict:
    """metrics.json's optional ``analysis`` entry: the TIDE breakdowns and the suggested threshold."""
    return {
        "tide": analysis["tide"],
        "tide_coco": analysis["tide_coco"],
        "suggested_score_threshold": analysis["suggested_score_threshold"],
    }


__all__ = ["analyze", "analyze_split", "draw_worst_images", "metrics_summary", "objects_by_size"]
