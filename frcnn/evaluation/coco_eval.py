"""COCO box metrics, mapped to metrics.json's ``coco`` entry.

Two interchangeable backends (``evaluation.coco_backend``) compute the same 12 numbers:
``faster_coco_eval`` (the default: the per-image matching and the accumulation in C++) and
``pycocotools`` (the reference COCOeval). Ground truth is always held as a pycocotools
``COCO`` object (the DATA API's ``coco_gt()``); the faster backend indexes a copy of its
annotation dict with the images numbered.
"""

from __future__ import annotations

import contextlib
import io
import logging

import faster_coco_eval
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.data.ground_truth import coco_from_dict

logger = logging.getLogger(__name__)

COCO_BACKENDS = ("faster_coco_eval", "pycocotools")
DEFAULT_COCO_BACKEND = "faster_coco_eval"

# COCOeval.stats order (summarize()): AP@[.5:.95], AP50, AP75, AP small/medium/large,
# AR with 1/10/100 detections, AR small/medium/large.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# COCOeval's area ranges (params.areaRng order), the keys of a class's AP in ``coco_per_class``.
COCO_AREA_NAMES = ("AP", "APs", "APm", "APl")


def check_coco_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`COCO_BACKENDS`, else a ValueError naming the key."""
    if backend not in COCO_BACKENDS:
        raise ValueError(f"evaluation.coco_backend must be one of {list(COCO_BACKENDS)}, got {backend!r}")
    return backend


def _pycocotools_eval(coco_gt: COCO, predictions: list[dict], image_ids: list | None):
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        if predictions:
            # loadRes adds keys (area, id, segmentation...) to the dicts it is given: give it copies
            coco_dt = coco_gt.loadRes([dict(p) for p in predictions])
        else:  # loadRes cannot index an empty list; an empty result set scores as such
            empty = {
                "images": coco_gt.dataset["images"],
                "categories": coco_gt.dataset["categories"],
                "annotations": [],
            }
            coco_dt = coco_from_dict(empty)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug("pycocotools:\n%s", captured.getvalue())
    return evaluator


def _faster_coco_eval(coco_gt: COCO, predictions: list[dict], image_ids: list | None):
    # faster-coco-eval takes int image ids only (VOC's are file stems): number the images in the
    # sorted order of their ids, the order COCOeval walks them in (it decides how score ties
    # between images are broken), on copies of the dicts.
    source = coco_gt.dataset
    number = {image["id"]: n for n, image in enumerate(sorted(source["images"], key=lambda image: image["id"]))}
    unknown = {p["image_id"] for p in predictions} - number.keys()
    if unknown:
        raise ValueError(f"predictions for image ids not in the ground truth: {sorted(unknown, key=str)[:5]}")
    gt = faster_coco_eval.COCO(
        {
            "images": [dict(image, id=number[image["id"]]) for image in source["images"]],
            "annotations": [dict(a, image_id=number[a["image_id"]]) for a in source["annotations"]],
            "categories": [dict(c) for c in source["categories"]],
        },
        print_function=logger.debug,
    )
    # copies (loadRes adds keys to the dicts it is given); an empty list scores as such
    coco_dt = gt.loadRes([{**p, "image_id": number[p["image_id"]]} for p in predictions])
    evaluator = faster_coco_eval.COCOeval_faster(gt, coco_dt, iouType="bbox", print_function=logger.debug)
    if image_ids is not None:
        evaluator.params.imgIds = [number[i] for i in image_ids]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def class_aps(precision: np.ndarray) -> np.ndarray:
    """Per-class AP [K, A] from COCOeval's ``eval["precision"]`` [T, R, K, A, M]: the mean over
    IoUs and recall points at the largest max-detections setting, as ``summarize()`` takes it over
    all classes; -1 where undefined (no ground truth of the class in that area range)."""
    values = precision[..., -1]  # [T, R, K, A]
    defined = values > -1
    total = np.where(defined, values, 0.0).sum(axis=(0, 1))
    count = defined.sum(axis=(0, 1))
    return np.where(count > 0, total / np.maximum(count, 1), -1.0)


def coco_evaluation(
    coco_gt: COCO, predictions: list[dict], image_ids: list | None = None, backend: str = DEFAULT_COCO_BACKEND
) -> tuple[dict, dict]:
    """COCOeval (bbox) of ``predictions``: (the 12 summary numbers by name, the per-class APs
    ``{category id: {"AP", "APs", "APm", "APl"}}``). Arguments as in :func:`coco_metrics`."""
    evaluate = {"faster_coco_eval": _faster_coco_eval, "pycocotools": _pycocotools_eval}
    evaluator = evaluate[check_coco_backend(backend)](coco_gt, predictions, image_ids)
    stats = {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}
    aps = class_aps(np.asarray(evaluator.eval["precision"]))
    categories = [int(c) for c in evaluator.params.catIds]  # the precision array's class order
    per_class = {category: dict(zip(COCO_AREA_NAMES, map(float, aps[k]))) for k, category in enumerate(categories)}
    return stats, per_class


def coco_metrics(
    coco_gt: COCO, predictions: list[dict], image_ids: list | None = None, backend: str = DEFAULT_COCO_BACKEND
) -> dict:
    """COCOeval (bbox) of COCO-results ``predictions`` against ``coco_gt``.

    predictions: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts with the
    ground truth's own ids (left unchanged). image_ids: the images evaluated (default: all of
    ``coco_gt``). backend: one of :data:`COCO_BACKENDS`. Returns the 12 summary numbers by name;
    as in pycocotools, -1 means undefined (no ground truth in that area range). Without any
    prediction every defined number is 0.
    """
    return coco_evaluation(coco_gt, predictions, image_ids, backend)[0]
