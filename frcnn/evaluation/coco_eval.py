"""COCO box metrics with pycocotools' COCOeval, mapped to metrics.json's ``coco`` entry."""

from __future__ import annotations

import contextlib
import io
import logging

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

# COCOeval.stats order (summarize()): AP@[.5:.95], AP50, AP75, AP small/medium/large,
# AR with 1/10/100 detections, AR small/medium/large.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_from_dict(dataset: dict) -> COCO:
    """A pycocotools COCO object from an in-memory annotation dict (no file, no prints)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_metrics(coco_gt: COCO, predictions: list[dict], image_ids: list | None = None) -> dict:
    """COCOeval (bbox) of COCO-results ``predictions`` against ``coco_gt``.

    predictions: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts with the
    ground truth's own ids. image_ids: the images evaluated (default: all of ``coco_gt``).
    Returns the 12 summary numbers by name; as in pycocotools, -1 means undefined (no ground truth
    in that area range). Without any prediction every defined number is 0.
    """
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        if predictions:
            # loadRes adds keys (area, id, segmentation...) to the dicts it is given: give it copies
            coco_dt = coco_gt.loadRes([dict(p) for p in predictions])
        else:  # loadRes cannot index an empty list; an empty result set scores as such
            empty = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"], "annotations": []}
            coco_dt = coco_from_dict(empty)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug("pycocotools:\n%s", captured.getvalue())
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}
