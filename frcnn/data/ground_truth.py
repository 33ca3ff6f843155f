"""The ground truth a split is scored against, built in one place for both metrics.

:func:`ground_truth_arrays` flattens a dataset's objects (the DATA API's ``get_annotation(i)``,
no image decoding) into :class:`GroundTruth` arrays, the VOC metric's input;
:func:`coco_ground_truth` writes those arrays as the pycocotools ``COCO`` index that COCOeval
scores (the ``coco_gt()`` of every dataset not read from a COCO file: a COCO file's own
annotations, with their areas and segmentations, are kept by :mod:`frcnn.data.coco`).

Difficult and crowd objects stay in both: the VOC metric ignores them (neither positive nor a
false positive when matched); COCO keeps difficult ones as ordinary objects (``iscrowd: 0``,
``ignore: 1``, which COCOeval overwrites with ``iscrowd``) and crowd ones as crowd regions.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO


@dataclass
class GroundTruth:
    """Ground-truth objects of a split, flattened over its images (G objects).

    image_index: int64 [G], the object's image (position in the split's ``image_ids``).
    labels: int64 [G] in 1..K. boxes: float64 [G, 4], ``(x1, y1, x2, y2)`` in continuous 0-based
    original-image pixels. ignore: bool [G], True for difficult and crowd objects.
    iscrowd: bool [G], the crowd regions among them (None: no crowd region).
    """

    image_index: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray
    iscrowd: np.ndarray | None = None

    def select(self, keep: np.ndarray) -> GroundTruth:
        """The objects where the bool [G] mask ``keep`` is True."""
        crowd = None if self.iscrowd is None else self.iscrowd[keep]
        return GroundTruth(self.image_index[keep], self.labels[keep], self.boxes[keep], self.ignore[keep], crowd)


def ground_truth_arrays(dataset) -> GroundTruth:
    """All objects of ``dataset`` (``image_ids`` and ``get_annotation(i)``, the DATA API)."""
    image_index, labels, boxes, difficult, iscrowd = [], [], [], [], []
    for index in range(len(dataset.image_ids)):
        annotation = dataset.get_annotation(index)
        image_index.append(np.full(len(annotation["labels"]), index, dtype=np.int64))
        labels.append(annotation["labels"].numpy().astype(np.int64))
        boxes.append(annotation["boxes"].numpy().astype(np.float64).reshape(-1, 4))
        difficult.append(annotation["difficult"].numpy().astype(bool))
        iscrowd.append(annotation["iscrowd"].numpy().astype(bool))
    crowd = _concatenate(iscrowd, bool)
    return GroundTruth(
        image_index=_concatenate(image_index, np.int64),
        labels=_concatenate(labels, np.int64),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        ignore=_concatenate(difficult, bool) | crowd,
        iscrowd=crowd,
    )


def coco_ground_truth(
    ground_truth: GroundTruth, images: Sequence[dict], category_ids: Sequence[int], class_names: Sequence[str]
) -> COCO:
    """``ground_truth`` as a COCO index. images: one COCO image record (``id``, ``height``,
    ``width``, optionally ``file_name``) per image of the split, in ``image_index`` order;
    label ``k`` is category ``category_ids[k - 1]``, named ``class_names[k - 1]``. Boxes become
    COCO's ``[x, y, w, h]`` and ``area`` is the box's."""
    xywh = ground_truth.boxes.astype(np.float64).copy()
    xywh[:, 2:] -= xywh[:, :2]
    crowd = ground_truth.iscrowd if ground_truth.iscrowd is not None else np.zeros(len(xywh), dtype=bool)
    columns = (ground_truth.image_index, ground_truth.labels, xywh, crowd, ground_truth.ignore)
    annotations = [
        {
            "id": k + 1,
            "image_id": images[image]["id"],
            "category_id": category_ids[label - 1],
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": int(is_crowd),
            "ignore": int(ignored),
        }
        for k, (image, label, box, is_crowd, ignored) in enumerate(zip(*(column.tolist() for column in columns)))
    ]
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, class_names)]
    return coco_from_dict({"images": list(images), "annotations": annotations, "categories": categories})


def coco_from_dict(dataset: dict) -> COCO:
    """A pycocotools COCO object from an in-memory annotation dict (no file, no prints)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def _concatenate(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
