"""A dataset's splits written in the COCO, VOC or YOLO layout (``scripts/convert_dataset.py``).

A writer takes one split as training reads it (a :class:`~frcnn.data.dataset.DetectionDataset`: its
annotation index and class names; no image is decoded) and writes it under ``dst`` in the layout
that ``dataset=auto`` reads back (:mod:`frcnn.data.detect`); the training split is named ``train``,
the test split ``val``:

====== =========================================================================================
COCO   ``images/<file>``, ``annotations/<split>.json``
VOC    ``JPEGImages/<file>``, ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt``
YOLO   ``data.yaml``, ``images/<split>/<file>``, ``labels/<split>/<stem>.txt``
====== =========================================================================================

Coordinates: the index holds float32 boxes ``(x1, y1, x2, y2)`` in continuous 0-based pixels of the
original image, labels 1..K. COCO's ``bbox`` is ``[x1, y1, x2 - x1, y2 - y1]`` in the same
coordinates (4 decimals), ``area`` its ``w * h``, category ids are the labels. VOC's XML is 1-based:
``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2`` (the reader's inverse), an integer where the
value is integral, else with up to 3 decimals. A YOLO row is ``class cx cy w h``, normalised by the
image's width and height, 8 significant digits; the class is ``label - 1``.

Flags the layouts lack: COCO has no difficult flag and YOLO neither a difficult nor a crowd flag,
so such objects are written there as ordinary objects; VOC has no crowd flag, so crowd regions are
written as difficult objects (each metric ignores its own kind).

Images are hard-linked into ``dst`` (copied where linking fails, e.g. across file systems), never
re-encoded, under their own file names, which must be unique in the folder they share (a COCO or VOC
``dst``'s splits, or one YOLO split): an image whose stem an earlier one took (two source folders
with a ``000005.jpg`` each; ``a.jpg`` beside ``a.png``) gets its position in its split as a prefix,
``<i>_000005.jpg``. A VOC image's id and a YOLO image's label file are named by that file's stem.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import yaml

from frcnn.data.build import build_dataset, resolve_layout
from frcnn.data.config import DatasetFormat, Split
from frcnn.data.dataset import DetectionDataset
from frcnn.data.validation import DatasetError, Problem

logger = logging.getLogger(__name__)

FORMATS = ("coco", "voc", "yolo")
TRAIN, VAL = "train", "val"  # the output names of the training and test splits


@dataclass
class WrittenSplit:
    """What a writer wrote: the split, its counts, and its annotations' file or folder (relative to ``dst``)."""

    split: str
    num_images: int
    num_boxes: int
    path: str


def read_splits(cfg) -> dict[str, DetectionDataset]:
    """``{"train": the training split, "val": the test split}`` of a ``dataset`` config node. With
    ``dataset=auto``, the layout found under ``root``: one without a test split gives ``"train"``
    alone, whole (what training holds out of it for validation is not taken out here)."""
    has_test = True
    if cfg.format == DatasetFormat.auto:
        layout, cfg = resolve_layout(cfg)  # read as its own format: build_dataset would hold images out
        has_test = layout.splits[1] is not None
        test = layout.splits[1] or "none: the training split is converted alone"
        logger.info("dataset=auto: %s holds a %s layout (training split %s, test split %s)",
                    cfg.root, layout.name, layout.splits[0], test)  # fmt: skip
    splits = {TRAIN: build_dataset(cfg, Split.train)}
    if has_test:
        splits[VAL] = build_dataset(cfg, Split.test)
    return splits


def check_output(dst: str, overwrite: bool, source: str) -> None:
    """Refuse (ValueError) to write into the dataset's own folder ``source`` (it is only read), or into a
    non-empty ``dst`` unless ``overwrite``."""
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise NotADirectoryError(f"output={dst} is a file; name a folder to write the dataset to")
    if os.path.isdir(source) and os.path.isdir(dst) and os.path.samefile(dst, source):
        raise ValueError(f"output={dst} is the dataset's own folder, which is only read: choose another folder")
    if os.path.isdir(dst) and os.listdir(dst) and not overwrite:
        raise ValueError(
            f"output={dst} is not empty: choose a new or empty folder, or add overwrite=true to replace "
            f"the files this command writes there (the others are kept)"
        )


def convert_splits(splits: dict[str, DetectionDataset], dst: str, output_format: str) -> list[WrittenSplit]:
    """Write every split of ``splits`` (output name -> dataset) under ``dst`` in ``output_format``
    (coco | voc | yolo). Every image file is checked first: a missing one is a DatasetError, before
    anything is written."""
    if output_format not in FORMATS:
        raise ValueError(f"format={output_format}: choose one of {', '.join(FORMATS)}")
    datasets = list(splits.values())
    check_image_files(datasets)
    if output_format == "yolo":
        class_names = list(dict.fromkeys(name for dataset in datasets for name in dataset.class_names))
        written = [write_yolo(dataset, dst, split, class_names=class_names) for split, dataset in splits.items()]
        write_data_yaml(dst, list(splits), class_names)
        return written
    writer = write_coco if output_format == "coco" else write_voc
    names = output_file_names(datasets)  # the splits share the images folder
    return [writer(dataset, dst, split, file_names) for (split, dataset), file_names in zip(splits.items(), names)]


def check_image_files(datasets: Iterable[DetectionDataset]) -> None:
    """Raise DatasetError naming every image file of ``datasets`` that does not exist."""
    missing = [
        Problem(path, None, "image file not found")
        for dataset in datasets
        for path in map(dataset.image_path, range(len(dataset)))
        if not os.path.isfile(path)
    ]
    if missing:
        raise DatasetError(missing)


def _stem_key(file_name: str) -> str:
    return os.path.splitext(file_name)[0].casefold()  # a case-insensitive file system would merge the others


def output_file_names(datasets: Sequence[DetectionDataset]) -> list[list[str]]:
    """The file name of each image of ``datasets`` in a folder they share: its own (without its source
    subfolders), or ``<i>_<own>`` (``i``: its position in its dataset, repeated until unique) when an
    earlier image took its stem, compared ignoring case."""
    own = [[os.path.basename(dataset.image_path(i)) for i in range(len(dataset))] for dataset in datasets]
    natural = {_stem_key(name) for names in own for name in names}
    taken: set[str] = set()
    result = []
    for names in own:
        unique = []
        for i, name in enumerate(names):
            if _stem_key(name) in taken:
                while _stem_key(name) in taken or _stem_key(name) in natural:
                    name = f"{i}_{name}"
            taken.add(_stem_key(name))
            unique.append(name)
        result.append(unique)
    return result


def place_image(source: str, target: str) -> None:
    """Hard-link ``source`` at ``target``, or copy it (metadata too) where linking fails; a file already
    at ``target`` is replaced, unless it is ``source`` itself."""
    if os.path.lexists(target):
        if os.path.exists(target) and os.path.samefile(source, target):
            return
        os.unlink(target)
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def _image_boxes(dataset: DetectionDataset, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(boxes float64 [n, 4] x1 y1 x2 y2, labels [n] 1..K, difficult [n], iscrowd [n]) of image ``i``."""
    index = dataset.index
    s = index.box_slice(i)
    return index.boxes[s].astype(np.float64), index.labels[s], index.difficult[s], index.iscrowd[s]


def write_coco(
    dataset: DetectionDataset, dst: str, split: str, file_names: Sequence[str] | None = None
) -> WrittenSplit:
    """``dst/images/<file>`` and ``dst/annotations/<split>.json``: images ids 1..N, annotation ids
    1..M, category ids 1..K (the labels), ``bbox`` ``[x1, y1, x2 - x1, y2 - y1]`` (continuous 0-based
    pixels). ``file_names``: the images' names in ``images/`` (default: :func:`output_file_names`)."""
    file_names = file_names or output_file_names([dataset])[0]
    index = dataset.index
    os.makedirs(os.path.join(dst, "images"), exist_ok=True)
    os.makedirs(os.path.join(dst, "annotations"), exist_ok=True)
    images, annotations = [], []
    for i, name in enumerate(file_names):
        place_image(dataset.image_path(i), os.path.join(dst, "images", name))
        images.append({"id": i + 1, "file_name": name, "height": int(index.heights[i]), "width": int(index.widths[i])})
        boxes, labels, _, iscrowd = _image_boxes(dataset, i)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)  # (n, 4) x, y, w, h
        areas = np.round(xywh[:, 2] * xywh[:, 3], 4).tolist()
        for box, label, crowd, area in zip(np.round(xywh, 4).tolist(), labels.tolist(), iscrowd.tolist(), areas):
            ids = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": label}
            annotations.append({**ids, "bbox": box, "area": area, "iscrowd": int(crowd)})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(dataset.class_names)]
    path = os.path.join("annotations", f"{split}.json")
    with open(os.path.join(dst, path), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return WrittenSplit(split, len(images), len(annotations), path)


def voc_number(value: float) -> str:
    """A VOC XML coordinate: ``"12"`` for an integral value, else up to 3 decimals (``"12.5"``)."""
    rounded = round(float(value), 3)
    return str(int(rounded)) if rounded.is_integer() else f"{rounded:.3f}".rstrip("0")


def voc_annotation(
    file_name: str, width: int, height: int, objects: Iterable[tuple[str, Sequence[float], bool]]
) -> ET.Element:
    """The ``<annotation>`` of one image; objects: (class name, box ``x1, y1, x2, y2`` in continuous
    0-based pixels, difficult), written 1-based: ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for name, (x1, y1, x2, y2), difficult in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, key).text = voc_number(value)
    ET.indent(root)
    return root


def write_voc(dataset: DetectionDataset, dst: str, split: str, file_names: Sequence[str] | None = None) -> WrittenSplit:
    """``dst/JPEGImages/<file>``, ``dst/Annotations/<id>.xml`` (:func:`voc_annotation`; crowd regions
    as difficult objects) and ``dst/ImageSets/Main/<split>.txt``; ``<id>`` is the file's stem.
    ``file_names``: the images' names in ``JPEGImages/`` (default: :func:`output_file_names`)."""
    file_names = file_names or output_file_names([dataset])[0]
    index = dataset.index
    for folder in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(dst, folder), exist_ok=True)
    image_ids = []
    for i, name in enumerate(file_names):
        place_image(dataset.image_path(i), os.path.join(dst, "JPEGImages", name))
        boxes, labels, difficult, iscrowd = _image_boxes(dataset, i)
        names = [dataset.class_names[label - 1] for label in labels.tolist()]
        objects = zip(names, boxes.tolist(), (difficult | iscrowd).tolist())
        image_id = os.path.splitext(name)[0]
        annotation = voc_annotation(name, int(index.widths[i]), int(index.heights[i]), objects)
        ET.ElementTree(annotation).write(os.path.join(dst, "Annotations", f"{image_id}.xml"), encoding="unicode")
        image_ids.append(image_id)
    path = os.path.join("ImageSets", "Main", f"{split}.txt")
    with open(os.path.join(dst, path), "w", encoding="utf-8") as f:
        f.writelines(f"{image_id}\n" for image_id in image_ids)
    return WrittenSplit(split, len(image_ids), index.num_boxes, path)


def yolo_number(value: float) -> str:
    """A normalised YOLO coordinate with 8 significant digits, positional (``"0.12345679"``)."""
    return np.format_float_positional(value, precision=8, unique=False, fractional=False, trim="-")


def yolo_rows(boxes: np.ndarray, classes: np.ndarray, height: int, width: int) -> list[str]:
    """``class cx cy w h`` rows of ``boxes`` [n, 4] ``x1, y1, x2, y2`` (continuous 0-based pixels of a
    ``width`` x ``height`` image), normalised to the image's sides; ``classes`` [n]: YOLO ids 0..K-1."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    centre_size = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1) / scale
    return [" ".join([str(c), *map(yolo_number, row)]) for c, row in zip(classes.tolist(), centre_size)]


def write_yolo(
    dataset: DetectionDataset,
    dst: str,
    split: str,
    file_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> WrittenSplit:
    """``dst/images/<split>/<file>`` and ``dst/labels/<split>/<stem>.txt`` (:func:`yolo_rows`; an image
    without objects gets an empty file). ``class_names``: the ``data.yaml`` names, by YOLO id
    (default: the dataset's; they must hold its classes); ``file_names``: as in :func:`write_coco`."""
    file_names = file_names or output_file_names([dataset])[0]
    class_names = list(class_names or dataset.class_names)
    yolo_id = np.array([-1] + [class_names.index(name) for name in dataset.class_names])  # label -> YOLO id
    index = dataset.index
    images, labels = os.path.join(dst, "images", split), os.path.join(dst, "labels", split)
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    for i, name in enumerate(file_names):
        place_image(dataset.image_path(i), os.path.join(images, name))
        boxes, image_labels, _, _ = _image_boxes(dataset, i)
        rows = yolo_rows(boxes, yolo_id[image_labels], int(index.heights[i]), int(index.widths[i]))
        with open(os.path.join(labels, f"{os.path.splitext(name)[0]}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{row}\n" for row in rows)
    return WrittenSplit(split, len(file_names), index.num_boxes, os.path.join("labels", split))


def write_data_yaml(dst: str, splits: Sequence[str], class_names: Sequence[str]) -> None:
    """``dst/data.yaml``: ``path: .``, each split's ``images/<split>`` folder, ``names: {0: name, ...}``."""
    data = {"path": ".", **{split: f"images/{split}" for split in splits}, "names": dict(enumerate(class_names))}
    with open(os.path.join(dst, "data.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)
