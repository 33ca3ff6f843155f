"""Pascal VOC format: a VOCdevkit tree of XML annotations, JPEG images and split files.

Layout under ``root``: ``VOC<YEAR>/{Annotations/<id>.xml, JPEGImages/<id>.jpg,
ImageSets/Main/<split>.txt}`` for a set named ``"YEAR-SPLIT"``; a set named ``"SPLIT"``
reads ``root`` itself as one such folder (custom VOC-format data, the shapes dataset).

XML boxes are 1-based inclusive pixel indices; ``xmin, ymin, xmax, ymax`` becomes the
continuous 0-based box ``[xmin - 1, ymin - 1, xmax, ymax]``.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.config import VOC_CLASSES, InvalidBoxPolicy, UnlistedClassPolicy
from frcnn.data.dataset import DetectionDataset
from frcnn.data.validation import (
    DatasetError,
    Problem,
    apply_invalid_box_policy,
    apply_unlisted_class_policy,
    raise_if_any,
    unlisted_reason,
)

IMAGE_EXTENSION = ".jpg"


def voc_set_dir(root: str, image_set: str) -> tuple[str, str]:
    """(folder, split) of a ``"YEAR-SPLIT"`` or ``"SPLIT"`` set name."""
    if "-" in image_set:
        year, split = image_set.split("-", 1)
        return os.path.join(root, f"VOC{year}"), split
    return root, image_set


def read_split_file(path: str) -> list[str]:
    """Image ids listed one per line in an ``ImageSets/Main/<split>.txt`` file."""
    try:
        with open(path) as f:
            return [line.split()[0] for line in f if line.strip()]
    except FileNotFoundError:
        raise DatasetError(Problem(path, None, "split file not found")) from None


class _VOCParser:
    """Accumulates the objects of many XML files; collects problems instead of stopping."""

    def __init__(self, class_names: Sequence[str]):
        self.label_of = {name: k + 1 for k, name in enumerate(class_names)}
        self.problems: list[Problem] = []
        self.columns: dict[str, list] = {
            key: [] for key in ("image_ids", "dir_index", "file_names", "heights", "widths",
                                "boxes_per_image", "boxes", "labels", "difficult", "iscrowd",
                                "object_ids")
        }  # fmt: skip

    def add(self, xml_path: str, image_id: str, dir_index: int) -> None:
        try:
            tree = ET.parse(xml_path)
        except FileNotFoundError:
            self.problems.append(Problem(xml_path, None, "annotation file not found"))
            return
        except ET.ParseError as exc:
            self.problems.append(Problem(xml_path, None, f"malformed XML ({exc})"))
            return
        root = tree.getroot()
        try:
            width = int(float(root.findtext("size/width")))
            height = int(float(root.findtext("size/height")))
        except (TypeError, ValueError):
            self.problems.append(Problem(xml_path, None, "missing or invalid <size> width/height"))
            return
        if width <= 0 or height <= 0:
            self.problems.append(Problem(xml_path, None, f"invalid image size {width}x{height}"))
            return
        objects = []
        for k, obj in enumerate(root.iter("object")):
            name = (obj.findtext("name") or "").strip()
            where = f"object {k} ({name!r})"
            if name not in self.label_of:
                self.problems.append(Problem(xml_path, where, unlisted_reason(name), unlisted_class=name))
                continue
            try:
                xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{c}")) for c in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                self.problems.append(Problem(xml_path, where, "missing or non-numeric <bndbox> coordinate"))
                continue
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append((k, [xmin - 1, ymin - 1, xmax, ymax], self.label_of[name], difficult))
        filename = (root.findtext("filename") or "").strip() or image_id + IMAGE_EXTENSION
        c = self.columns
        c["image_ids"].append(image_id)
        c["dir_index"].append(dir_index)
        c["file_names"].append(filename)
        c["heights"].append(height)
        c["widths"].append(width)
        c["boxes_per_image"].append(len(objects))
        for k, box, label, difficult in objects:
            c["boxes"].append(box)
            c["labels"].append(label)
            c["difficult"].append(difficult)
            c["iscrowd"].append(False)
            c["object_ids"].append(k)


def parse_voc(
    root: str, image_sets: Sequence[str], class_names: Sequence[str]
) -> tuple[AnnotationIndex, list[Problem]]:
    """Index the given sets (concatenated in order) and list every problem found.

    Images whose XML is missing or malformed are left out of the index; objects with an
    unknown class or unreadable box are left out of their image. Box validity (degenerate,
    outside the image) is checked later, by the invalid-box policy.
    """
    parser = _VOCParser(class_names)
    image_dirs, seen = [], {}
    for image_set in image_sets:
        folder, split = voc_set_dir(root, image_set)
        if not os.path.isdir(folder):
            raise DatasetError(Problem(folder, None, f"VOC folder of set {image_set!r} not found"))
        image_dirs.append(os.path.join(folder, "JPEGImages"))
        for image_id in read_split_file(os.path.join(folder, "ImageSets", "Main", f"{split}.txt")):
            xml_path = os.path.join(folder, "Annotations", f"{image_id}.xml")
            if image_id in seen:
                reason = f"image id {image_id!r} listed twice (also in {seen[image_id]!r})"
                parser.problems.append(Problem(xml_path, None, reason))
                continue
            seen[image_id] = image_set
            parser.add(xml_path, image_id, len(image_dirs) - 1)
    return AnnotationIndex.build(image_dirs=image_dirs, **parser.columns), parser.problems


class VOCDetection(DetectionDataset):
    """VOC-format dataset; ``image_ids`` are file stems and ``category_ids`` are 1..K.

    Any problem found while parsing raises DatasetError listing them all (objects of classes not
    in ``class_names`` follow ``unlisted_classes``); invalid boxes
    follow ``invalid_boxes``. Other keyword arguments go to :class:`DetectionDataset`.
    """

    def __init__(
        self,
        root: str,
        image_sets: Sequence[str],
        class_names: Sequence[str] | None = None,
        invalid_boxes: InvalidBoxPolicy | str = InvalidBoxPolicy.error,
        unlisted_classes: UnlistedClassPolicy | str = UnlistedClassPolicy.error,
        **kwargs,
    ):
        self.root = root
        class_names = list(class_names or VOC_CLASSES)
        index, problems = parse_voc(root, image_sets, class_names)
        name = kwargs.get("name", f"voc {'+'.join(image_sets)}")
        raise_if_any(apply_unlisted_class_policy(problems, unlisted_classes, name))
        describe = functools.partial(describe_voc_box, index, class_names)
        index = apply_invalid_box_policy(index, invalid_boxes, describe, name)
        category_ids = list(range(1, len(class_names) + 1))
        super().__init__(index=index, class_names=class_names, category_ids=category_ids, **kwargs)


def describe_voc_box(index: AnnotationIndex, class_names: Sequence[str], k: int) -> tuple[str, str]:
    """(XML file, object) of box ``k`` of ``index``, for messages."""
    i = index.image_of_box(k)
    folder = os.path.dirname(index.image_dirs[int(index.dir_index[i])])
    xml_path = os.path.join(folder, "Annotations", f"{index.image_ids[i]}.xml")
    return xml_path, f"object {int(index.object_ids[k])} ({class_names[int(index.labels[k]) - 1]!r})"
