"""Detection results in files: predictions.json (COCO results format) and VOC devkit files.

predictions.json is a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
with boxes in continuous 0-based original-image pixel coordinates and the dataset's own ids
(``dataset.image_ids`` / ``dataset.category_ids``). Floats are written with ``repr`` precision,
so a file read back scores exactly like the detections it was written from.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from frcnn.evaluation.voc_eval import Detections, devkit_boxes
from frcnn.utils.files import write_atomic

log = logging.getLogger(__name__)

_PREDICTION_KEYS = ("image_id", "category_id", "bbox", "score")
_MAX_NAMED = 10


def predictions_from_detections(
    dets: Detections, image_ids: list, category_ids: list[int], class_names: list[str] | None = None
) -> list[dict]:
    """Detections (labels 1..K, xyxy boxes) -> COCO-results dicts with the dataset's ids.

    With ``class_names`` (K names) each dict also carries ``category_name``: an extra key, which
    COCO tools ignore, so a reader needs no class list to tell what was detected.
    """
    x1, y1, x2, y2 = np.asarray(dets.boxes, dtype=np.float64).T
    bboxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist()
    predictions = [
        {"image_id": image_ids[index], "category_id": category_ids[label - 1], "bbox": bbox, "score": score}
        for index, label, bbox, score in zip(
            dets.image_index.tolist(), dets.labels.tolist(), bboxes, np.asarray(dets.scores, dtype=np.float64).tolist()
        )
    ]
    if class_names is not None:
        for prediction, label in zip(predictions, dets.labels.tolist()):
            prediction["category_name"] = class_names[label - 1]
    return predictions


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
    write_atomic(path, json.dumps(predictions))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _structure_problem(prediction) -> str | None:
    """Why ``prediction`` is not a COCO-results entry (keys and types), or None."""
    if not isinstance(prediction, dict):
        return f"expected an object with keys {_PREDICTION_KEYS}, got {type(prediction).__name__}"
    missing = [key for key in _PREDICTION_KEYS if key not in prediction]
    if missing:
        return f"missing {', '.join(missing)}"
    bbox = prediction["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}"
    if not _is_number(prediction["score"]):
        return f"score must be a number, got {prediction['score']!r}"
    if not isinstance(prediction["image_id"], (int, str)) or isinstance(prediction["image_id"], bool):
        return f"image_id must be an integer or a string, got {prediction['image_id']!r}"
    if not isinstance(prediction["category_id"], int) or isinstance(prediction["category_id"], bool):
        return f"category_id must be an integer, got {prediction['category_id']!r}"
    return None


def _value_problem(prediction: dict) -> str | None:
    """Why a well-formed entry cannot be scored (non-finite numbers, negative size), or None."""
    x, y, w, h = prediction["bbox"]
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"bbox has a non-finite number: {prediction['bbox']!r}"
    if w < 0 or h < 0:
        return f"bbox has a negative width or height: {prediction['bbox']!r}"
    if not math.isfinite(prediction["score"]):
        return f"score is not finite: {prediction['score']!r}"
    return None


def load_predictions(path: str | Path, invalid: str = "error") -> list[dict]:
    """Read a COCO-results file, checking every entry; errors name the file and the entry index.

    Entries of the wrong structure or types are always errors. Entries whose box has a NaN or
    infinite number or a negative width or height, or whose score is not finite, are errors
    under ``invalid="error"``; ``invalid="drop"`` drops them and logs how many.
    """
    path = Path(path)
    if invalid not in ("error", "drop"):
        raise ValueError(f"invalid_predictions must be error or drop, got {invalid!r}")
    try:
        with open(path) as f:
            predictions = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read predictions file {path}: {error}") from error
    if not isinstance(predictions, list):
        raise ValueError(f"{path}: expected a list of detections, got {type(predictions).__name__}")
    kept, dropped = [], []
    for position, prediction in enumerate(predictions):
        problem = _structure_problem(prediction)
        if problem is not None:
            raise ValueError(f"{path}: entry {position}: {problem}")
        problem = _value_problem(prediction)
        if problem is None:
            kept.append(prediction)
        elif invalid == "error":
            raise ValueError(f"{path}: entry {position}: {problem} (invalid_predictions=drop drops such entries)")
        else:
            dropped.append(position)
    if dropped:
        log.warning(
            "%s: dropped %d of %d entries with a non-finite or negative-size box or a non-finite score "
            "(invalid_predictions=drop; first: entry %d)",
            path,
            len(dropped),
            len(predictions),
            dropped[0],
        )
    return kept


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
