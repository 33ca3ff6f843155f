"""Section ``eval``: scoring speed of the VOC metrics and of both COCO backends on a synthetic
VOC07-test-sized result set."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from frcnn.bench.timing import interleaved_times, medians
from frcnn.data.ground_truth import GroundTruth, coco_ground_truth
from frcnn.evaluation.coco_eval import COCO_BACKENDS, coco_metrics
from frcnn.evaluation.results_io import predictions_from_detections
from frcnn.evaluation.voc_eval import Detections, voc_metrics, voc_pr_curves


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


def synthetic_coco_ground_truth(gts: GroundTruth, num_images: int, class_names: list[str]):
    """``gts`` as a COCO ground-truth object: image ids 0..num_images-1 (500x375), category ids
    1..K named ``class_names``, boxes as COCO's [x, y, w, h]."""
    images = [{"id": i, "height": 375, "width": 500} for i in range(num_images)]
    return coco_ground_truth(gts, images, list(range(1, len(class_names) + 1)), class_names)


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

    coco_gt = synthetic_coco_ground_truth(gts, num_images, class_names)
    predictions = predictions_from_detections(dets, list(range(num_images)), list(range(1, num_classes + 1)))
    coco: dict[str, dict] = {}

    def score(backend: str) -> Callable[[], None]:
        def run() -> None:
            coco[backend] = coco_metrics(coco_gt, predictions, backend=backend)

        return run

    times = interleaved_times({"coco": {backend: score(backend) for backend in COCO_BACKENDS}}, 0, coco_repeats)
    coco_seconds = medians(times)["coco"]
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
