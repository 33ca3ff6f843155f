"""COCO format: an images folder and an ``instances_*.json`` file.

The JSON is read once into compact arrays (see :mod:`frcnn.data.annotation_index`);
pycocotools loads the same file for evaluation (:meth:`COCODetection.coco_gt`). Category
ids, possibly non-contiguous, map to labels 1..K in the order of ``class_names`` (default:
categories sorted by id), and back through ``category_ids``. ``bbox`` ``[x, y, w, h]``
becomes ``[x, y, x + w, y + h]`` (COCO boxes are already continuous 0-based coordinates).
Crowd boxes stay in the index (flag ``iscrowd``) and are left out of training targets.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.config import InvalidBoxPolicy, UnlistedClassPolicy
from frcnn.data.dataset import DetectionDataset
from frcnn.data.ground_truth import coco_from_dict
from frcnn.data.index_cache import cached_parse
from frcnn.data.validation import (
    DatasetError,
    Problem,
    apply_invalid_box_policy,
    apply_unlisted_class_policy,
    raise_if_any,
    unlisted_reason,
)


def load_coco_json(path: str) -> dict:
    """The JSON object of a COCO instances file; DatasetError when missing or not COCO."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(Problem(path, None, "annotation file not found")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(Problem(path, None, f"not valid JSON ({exc})")) from None
    if not isinstance(data, dict):
        raise DatasetError(Problem(path, None, "not a COCO instances file: top level is not an object"))
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(Problem(path, None, f"not a COCO instances file: no {key!r} list"))
    return data


def _records(path: str, kind: str, records: list, fields: dict[str, tuple[type, ...]]) -> list[Problem]:
    """Problems of records (images, annotations, categories) lacking a field of the right type."""
    problems = []
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(Problem(path, f"{kind} #{n}", "not a JSON object"))
            continue
        for key, types in fields.items():
            value = record.get(key)
            ok = isinstance(value, types) and not isinstance(value, bool)
            if ok and key == "bbox":
                ok = len(value) == 4 and all(isinstance(v, (int, float)) for v in value)
            if not ok:
                name = f"{kind} id {record['id']}" if isinstance(record.get("id"), int) else f"{kind} #{n}"
                problems.append(Problem(path, name, f"missing or invalid {key!r}: {value!r}"))
    return problems


IMAGE_FIELDS = {"id": (int,), "file_name": (str,), "width": (int, float), "height": (int, float)}
ANNOTATION_FIELDS = {"id": (int,), "image_id": (int,), "category_id": (int,), "bbox": (list,)}
CATEGORY_FIELDS = {"id": (int,), "name": (str,)}


def _image_table(path: str, images: list[dict]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(ids, file names, heights, widths) of the image records; every malformed record is a problem."""
    try:  # fast path: every image record well-formed (else list the malformed ones)
        image_ids = np.array([im["id"] for im in images], dtype=np.int64)
        file_names = [im["file_name"] for im in images]
        heights = np.array([im["height"] for im in images], dtype=np.float64).astype(np.int32)
        widths = np.array([im["width"] for im in images], dtype=np.float64).astype(np.int32)
        if not all(isinstance(f, str) for f in file_names):
            raise TypeError("file_name")
    except (KeyError, TypeError, ValueError):
        raise DatasetError(_records(path, "image", images, IMAGE_FIELDS)) from None
    return image_ids, file_names, heights, widths


def roboflow_placeholder(cats: list[dict]) -> dict | None:
    """The category a Roboflow export adds for the project itself (``supercategory: "none"``, named as
    every other category's supercategory, never used by an annotation), or None."""
    for cat in cats:
        others = [c for c in cats if c is not cat]
        if cat.get("supercategory") == "none" and others and all(c.get("supercategory") == cat["name"] for c in others):
            return cat
    return None


def _select_categories(path: str, cats: list[dict], class_names: Sequence[str] | None) -> tuple[list[str], list[int]]:
    """(class names, their category ids): all categories by id (but a Roboflow export's placeholder),
    or those of ``class_names`` in its order."""
    cats = sorted(cats, key=lambda c: c["id"])
    if class_names is None:
        placeholder = roboflow_placeholder(cats)
        class_names = [c["name"] for c in cats if c is not placeholder]
    id_of_name = {c["name"]: c["id"] for c in cats}
    missing = [n for n in class_names if n not in id_of_name]
    if missing:
        raise DatasetError(Problem(path, None, f"classes {missing} have no category in the file"))
    return list(class_names), [id_of_name[n] for n in class_names]


def _annotation_table(path: str, anns: list[dict], problems: list[Problem]) -> tuple[np.ndarray, ...]:
    """(ids, image ids, category ids, bbox [N, 4] xywh, iscrowd) of the annotation records; a malformed
    record raises with ``problems`` and every malformed one."""
    try:  # fast path: every annotation well-formed (else list the malformed ones)
        ann_ids = np.array([a["id"] for a in anns], dtype=np.int64)
        ann_images = np.array([a["image_id"] for a in anns], dtype=np.int64)
        ann_cats = np.array([a["category_id"] for a in anns], dtype=np.int64)
        bbox = np.asarray([a["bbox"] for a in anns])
        # Numbers only, as COCO scoring reads them: numpy would also parse "12.5" (and pycocotools not).
        if bbox.size and bbox.dtype.kind not in "iuf":
            raise TypeError("bbox")
        bbox = bbox.astype(np.float32).reshape(len(anns), 4)
        crowd = np.array([a.get("iscrowd", 0) for a in anns], dtype=bool)
    except (KeyError, TypeError, ValueError):
        raise DatasetError(problems + _records(path, "annotation", anns, ANNOTATION_FIELDS)) from None
    return ann_ids, ann_images, ann_cats, bbox, crowd


def parse_coco(
    path: str, images_dir: str, class_names: Sequence[str] | None = None
) -> tuple[AnnotationIndex, list[str], list[int], list[Problem]]:
    """Index a COCO instances file: (index, class_names, category_ids, problems).

    ``class_names`` (optional) selects and orders the categories by name; annotations of
    other categories are problems ("unknown class name"). Images without annotations are
    kept. Annotations referring to unknown images or categories are left out and reported.
    """
    data = load_coco_json(path)
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    problems = _records(path, "category", cats, CATEGORY_FIELDS)
    raise_if_any(problems)
    image_ids, file_names, heights, widths = _image_table(path, images)
    class_names, category_ids = _select_categories(path, cats, class_names)
    name_of = {c["id"]: c["name"] for c in cats}

    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    duplicated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    problems += [Problem(path, f"image id {i}", "image id listed twice") for i in np.unique(duplicated)]
    ann_ids, ann_images, ann_cats, bbox, crowd = _annotation_table(path, anns, problems)

    row = np.minimum(np.searchsorted(sorted_ids, ann_images), max(len(sorted_ids) - 1, 0))
    known_image = sorted_ids[row] == ann_images if len(sorted_ids) else np.zeros(len(anns), dtype=bool)
    # label lookup table over category ids: 0 = not a selected class
    lut = np.zeros(max(name_of, default=0) + 1, dtype=np.int64)
    lut[category_ids] = np.arange(1, len(category_ids) + 1)
    in_range = (ann_cats >= 0) & (ann_cats < len(lut))
    labels = np.where(in_range, lut[np.where(in_range, ann_cats, 0)], 0)
    for k in np.flatnonzero(~known_image):
        problems.append(Problem(path, f"annotation id {ann_ids[k]}", f"unknown image id {ann_images[k]}"))
    for k in np.flatnonzero(known_image & (labels == 0)):
        cid = int(ann_cats[k])
        where = f"annotation id {ann_ids[k]}"
        if cid in name_of:  # a category of the file left out of dataset.classes
            problems.append(Problem(path, where, unlisted_reason(name_of[cid]), unlisted_class=name_of[cid]))
        else:
            problems.append(Problem(path, where, f"unknown category id {cid}"))

    valid = known_image & (labels > 0)
    image_row = order[row[valid]]  # the annotation's position in the images list
    by_image = np.argsort(image_row, kind="stable")
    boxes = bbox[valid][by_image]
    boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> (x1, y1, x2, y2)
    index = AnnotationIndex.build(
        image_ids=image_ids,
        image_dirs=[images_dir],
        dir_index=np.zeros(len(images), dtype=np.int16),
        file_names=file_names,
        heights=heights,
        widths=widths,
        boxes_per_image=np.bincount(image_row, minlength=len(images)),
        boxes=boxes,
        labels=labels[valid][by_image],
        difficult=np.zeros(len(boxes), dtype=bool),
        iscrowd=crowd[valid][by_image],
        object_ids=ann_ids[valid][by_image],
    )
    return index, class_names, category_ids, problems


class COCODetection(DetectionDataset):
    """COCO-format dataset; ``image_ids`` and ``category_ids`` are the file's own ids.

    Any problem found while parsing raises DatasetError listing them all (objects of classes not
    in ``class_names`` follow ``unlisted_classes``); invalid boxes
    follow ``invalid_boxes``. Other keyword arguments go to :class:`DetectionDataset`.
    """

    def __init__(
        self,
        annotation_file: str,
        images_dir: str,
        class_names: Sequence[str] | None = None,
        invalid_boxes: InvalidBoxPolicy | str = InvalidBoxPolicy.error,
        unlisted_classes: UnlistedClassPolicy | str = UnlistedClassPolicy.error,
        **kwargs,
    ):
        self.annotation_file = annotation_file
        parse = functools.partial(parse_coco, annotation_file, images_dir, class_names)
        index, class_names, category_ids, problems = cached_parse(annotation_file, class_names, parse)
        name = kwargs.get("name", os.path.basename(annotation_file))
        raise_if_any(apply_unlisted_class_policy(problems, unlisted_classes, name))
        describe = lambda k: (annotation_file, f"annotation id {int(index.object_ids[k])}")  # noqa: E731
        index = apply_invalid_box_policy(index, invalid_boxes, describe, name)
        super().__init__(index=index, class_names=class_names, category_ids=category_ids, **kwargs)

    def _build_coco_gt(self) -> COCO:
        """The annotation file with the index's own objects: the ones ``invalid_boxes`` dropped are
        left out and the clipped ones carry their clipped box, so that COCO AP and the VOC metrics
        score the same ground truth; only the selected categories are kept. Every other field (area, iscrowd,
        segmentation, ...) is the file's."""
        data = load_coco_json(self.annotation_file)
        kept = {int(i): box for i, box in zip(self.index.object_ids, self.index.boxes)}
        annotations = []
        for record in data["annotations"]:
            box = kept.get(record["id"])
            if box is None:
                continue
            raw = np.asarray(record["bbox"], dtype=np.float32)
            if not np.array_equal(np.concatenate([raw[:2], raw[:2] + raw[2:]]), box):  # clipped
                x1, y1, x2, y2 = (float(v) for v in box)
                record = {**record, "bbox": [x1, y1, x2 - x1, y2 - y1]}
            annotations.append(record)
        selected = set(self.category_ids)  # dataset.classes may select a subset of the file's categories
        categories = [c for c in data["categories"] if c["id"] in selected]
        return coco_from_dict({**data, "annotations": annotations, "categories": categories})
