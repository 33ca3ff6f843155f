"""Detection results in files: predictions.json (COCO results format) and VOC devkit files.

predictions.json is a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
with boxes in continuous 0-based original-image pixel coordinates and the dataset's own ids
(``dataset.image_ids`` / ``dataset.category_ids``). Floats are written with ``repr`` precision,
so a file read back scores exactly like the detections it was written from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from frcnn.evaluation.voc_eval import Detections, devkit_boxes

_PREDICTION_KEYS = ("image_id", "category_id", "bbox", "score")
_MAX_NAMED = 10


def predictions_from_detections(dets: Detections, image_ids: list, category_ids: list[int]) -> list[dict]:
    """Detections (labels 1..K, xyxy boxes) -> COCO-results dicts with the dataset's ids."""
    x1, y1, x2, y2 = np.asarray(dets.boxes, dtype=np.float64).T
    bboxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist()
    return [
        {"image_id": image_ids[index], "category_id": category_ids[label - 1], "bbox": bbox, "score": score}
        for index, label, bbox, score in zip(
            dets.image_index.tolist(), dets.labels.tolist(), bboxes, np.asarray(dets.scores, dtype=np.float64).tolist()
        )
    ]


def detections_from_predictions(predictions: list[dict], image_ids: list, category_ids: list[int]) -> Detections:
    """COCO-results dicts -> Detections over the dataset's images and labels.

    Raises ValueError naming the image ids / category ids that the dataset does not have.
    """
    index_of_image = {image_id: index for index, image_id in enumerate(image_ids)}
    label_of_category = {category_id: label for label, category_id in enumerate(category_ids, start=1)}
    unknown_images = {p["image_id"] for p in predictions} - index_of_image.keys()
    unknown_categories = {p["category_id"] for p in predictions} - label_of_category.keys()
    if unknown_images or unknown_categories:
        problems = []
        if unknown_images:
            problems.append(f"{len(unknown_images)} unknown image id(s) {_first(unknown_images)}")
        if unknown_categories:
            problems.append(f"{len(unknown_categories)} unknown category id(s) {_first(unknown_categories)}")
        raise ValueError("predictions do not match the dataset: " + "; ".join(problems))

    bbox = np.asarray([p["bbox"] for p in predictions], dtype=np.float64).reshape(-1, 4)
    return Detections(
        image_index=np.asarray([index_of_image[p["image_id"]] for p in predictions], dtype=np.int64),
        labels=np.asarray([label_of_category[p["category_id"]] for p in predictions], dtype=np.int64),
        scores=np.asarray([p["score"] for p in predictions], dtype=np.float64),
        boxes=np.concatenate([bbox[:, :2], bbox[:, :2] + bbox[:, 2:]], axis=1),
    )


def _first(values: set) -> str:
    named = sorted(values, key=repr)[:_MAX_NAMED]
    return ", ".join(repr(v) for v in named) + (", ..." if len(values) > _MAX_NAMED else "")


def save_predictions(path: str | Path, predictions: list[dict]) -> None:
    """Write predictions.json atomically (tmp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(predictions, f)
    os.replace(tmp, path)


def load_predictions(path: str | Path) -> list[dict]:
    """Read a COCO-results file, checking its structure; errors name the file and the entry."""
    path = Path(path)
    try:
        with open(path) as f:
            predictions = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read predictions file {path}: {error}") from error
    if not isinstance(predictions, list):
        raise ValueError(f"{path}: expected a list of detections, got {type(predictions).__name__}")
    for position, prediction in enumerate(predictions):
        missing = [key for key in _PREDICTION_KEYS if not isinstance(prediction, dict) or key not in prediction]
        if missing or len(prediction["bbox"]) != 4:
            raise ValueError(
                f"{path}: entry {position} needs {_PREDICTION_KEYS} with a 4-number bbox, got {prediction!r}"
            )
    return predictions


def write_voc_devkit_results(
    directory: str | Path, dets: Detections, image_ids: list, class_names: list[str], set_name: str
) -> list[Path]:
    """One ``comp4_det_<set>_<class>.txt`` per class, as the VOC evaluation server expects.

    Each line is ``<image id> <score> <xmin> <ymin> <xmax> <ymax>`` in the devkit's 1-based
    inclusive pixel coordinates (project box ``(x1, y1, x2, y2)`` -> ``(x1 + 1, y1 + 1, x2, y2)``).
    Every class gets a file, empty when it has no detection.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    boxes = devkit_boxes(dets.boxes)
    paths = []
    for label, class_name in enumerate(class_names, start=1):
        rows = np.nonzero(dets.labels == label)[0]
        path = directory / f"comp4_det_{set_name}_{class_name}.txt"
        with open(path, "w") as f:
            for row in rows:
                xmin, ymin, xmax, ymax = boxes[row]
                image_id, score = image_ids[dets.image_index[row]], dets.scores[row]
                f.write(f"{image_id} {score:.6f} {xmin:.2f} {ymin:.2f} {xmax:.2f} {ymax:.2f}\n")
        paths.append(path)
    return paths
