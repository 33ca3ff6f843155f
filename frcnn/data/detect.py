"""``dataset=auto``: which layout a folder holds, found from its files (no annotation is parsed).

:func:`detect_layout` looks for each readable layout's marker files under ``root`` and returns the
one found as the ``dataset`` keys that read it (``format``, and the split sets or files):

========== =====================================================================================
VOC        ``Annotations/`` + ``ImageSets/Main/<split>.txt`` in root, or a VOCdevkit (``VOC<YEAR>/``)
Roboflow   ``train/_annotations.coco.json`` (+ ``valid/`` or ``test/``): COCO files, one per folder
COCO       ``annotations/*.json`` with the images in ``images/`` or in a folder named as the file
YOLO       ``data.yaml`` (``dataset.yaml``, ``data.yml``): Ultralytics' layout
CVAT       ``annotations.xml``: CVAT for images 1.1
LabelMe    LabelMe JSON files (``"shapes"`` and ``"imagePath"``) under root, or under its split folders
========== =====================================================================================

The training split is ``train`` (VOC: ``trainval`` when there is no ``train``); the test split is the
first of ``val``, ``valid``, ``validation``, ``test`` present. A folder matching no layout, or more
than one, is a :class:`LayoutError` naming what was looked for or found.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field

import yaml

from frcnn.data.config import VOC_CLASSES, DatasetFormat
from frcnn.data.yolo import find_data_yaml

TEST_SPLITS = ("val", "valid", "validation", "test")
LOOKED_FOR = (
    "VOC (Annotations/ + ImageSets/Main/, or VOC<YEAR>/), Roboflow COCO (train/_annotations.coco.json), "
    "COCO (annotations/*.json), YOLO (data.yaml), CVAT (annotations.xml), LabelMe (*.json with shapes)"
)


class LayoutError(ValueError):
    """``root`` holds no readable layout, or several."""


@dataclass
class Layout:
    """A detected layout: its format, the ``dataset`` keys that read it, and a description.

    keys: dotted ``dataset`` keys -> values (``train_sets``, ``train.annotations``, ...), besides ``format``;
    splits: (training split, test split or None) as the layout names them."""

    format: DatasetFormat
    name: str  # "VOC", "Roboflow COCO", ...
    splits: tuple[str, str | None]
    keys: dict = field(default_factory=dict)  # besides format
    # The classes, where the layout has no list of its own that the reader takes (a custom VOC folder)
    class_names: list[str] | None = None

    def describe(self, root: str) -> str:
        test = self.splits[1] or "none: dataset.val_fraction of the training split held out"
        return f"dataset=auto: {root} holds a {self.name} layout (training split {self.splits[0]}, test split {test})"


def _first(candidates, present) -> str | None:
    return next((name for name in candidates if name in present), None)


def _voc(root: str) -> Layout | None:
    main = os.path.join(root, "ImageSets", "Main")
    if os.path.isdir(os.path.join(root, "Annotations")) and os.path.isdir(main):
        splits = {os.path.splitext(f)[0] for f in os.listdir(main) if f.endswith(".txt") and "_" not in f}
        train = _first(("train", "trainval"), splits)
        if train is None:
            return None
        test = _first(TEST_SPLITS, splits - {train})
        keys = {"train_sets": [train], "test_sets": [test] if test else []}
        return Layout(DatasetFormat.voc, "VOC", (train, test), keys, class_names=voc_class_names(root))
    mains = {
        d[3:]: os.path.join(root, d, "ImageSets", "Main") for d in os.listdir(root) if re.fullmatch(r"VOC\d{4}", d)
    }
    years = sorted(year for year, folder in mains.items() if os.path.isdir(folder))
    if not years:
        return None
    sets = {year: os.listdir(mains[year]) for year in years}
    train = [f"{y}-trainval" for y in years if "trainval.txt" in sets[y] and "test.txt" not in sets[y]]
    test = [f"{y}-test" for y in years if "test.txt" in sets[y]]
    if test:  # VOC2007 has a test split: 07+12 trainval trains, 07 test tests
        train = [f"{y}-trainval" for y in years if "trainval.txt" in sets[y]]
    else:
        train = [f"{y}-train" for y in years if "train.txt" in sets[y]]
        test = [f"{y}-val" for y in years if "val.txt" in sets[y]]
    keys = {"train_sets": train, "test_sets": test}
    return Layout(DatasetFormat.voc, "VOCdevkit", ("+".join(train), "+".join(test) or None), keys)


def voc_class_names(root: str) -> list[str] | None:
    """The object names of a custom VOC folder's ``Annotations/*.xml``, sorted; None when they are
    the 20 VOC classes (the reader's own list, in VOC's order)."""
    import xml.etree.ElementTree as ET

    names = set()
    for path in glob.glob(os.path.join(glob.escape(root), "Annotations", "*.xml")):
        try:
            names |= {(name.text or "").strip() for name in ET.parse(path).getroot().iterfind("object/name")}
        except ET.ParseError:
            continue  # the reader names the malformed file
    return None if names <= set(VOC_CLASSES) and len(names) == len(VOC_CLASSES) else sorted(names)


def _roboflow(root: str) -> Layout | None:
    present = {d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "_annotations.coco.json"))}
    if "train" not in present:
        return None
    test = _first(TEST_SPLITS, present)
    keys = {"train.images": "train", "train.annotations": "train/_annotations.coco.json"}
    if test:
        keys |= {"test.images": test, "test.annotations": f"{test}/_annotations.coco.json"}
    return Layout(DatasetFormat.coco, "Roboflow COCO", ("train", test), keys)


def _coco_split(files: dict[str, str], names: tuple[str, ...]) -> str | None:
    """The annotation file (stem) of a split: ``train.json``, ``instances_train2017.json``, ..."""
    for stem in sorted(files):
        bare = stem.removeprefix("instances_")
        if re.sub(r"\d+$", "", bare) in names:
            return stem
    return None


def _coco(root: str) -> Layout | None:
    folder = os.path.join(root, "annotations")
    if not os.path.isdir(folder):
        return None
    files = {os.path.splitext(f)[0]: f for f in os.listdir(folder) if f.endswith(".json")}
    train = _coco_split(files, ("train",))
    if train is None:
        return None
    test = _coco_split(files, TEST_SPLITS)
    keys: dict[str, str] = {}
    for split, stem in (("train", train), ("test", test)):
        if stem is None:
            continue
        bare = stem.removeprefix("instances_")  # COCO's own: annotations/instances_val2017.json + val2017/
        images = bare if os.path.isdir(os.path.join(root, bare)) else "images"
        keys |= {f"{split}.images": images, f"{split}.annotations": f"annotations/{files[stem]}"}
    return Layout(DatasetFormat.coco, "COCO", (train, test), keys)


def _yolo(root: str) -> Layout | None:
    path = find_data_yaml(root)
    if path is None:
        return None
    found = os.path.basename(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as error:
        raise LayoutError(f"{path}: not a readable YAML file ({error})") from None
    splits = {key for key in ("train", *TEST_SPLITS) if isinstance(data, dict) and data.get(key)}
    test = _first(TEST_SPLITS, splits)
    keys = {"train_sets": ["train"], "test_sets": [test] if test else []}
    return Layout(DatasetFormat.yolo, f"YOLO ({found})", ("train", test), keys)


def _cvat(root: str) -> Layout | None:
    path = os.path.join(root, "annotations.xml")
    if not os.path.isfile(path):
        return None
    import xml.etree.ElementTree as ET

    try:
        images = ET.parse(path).getroot().iter("image")
    except ET.ParseError as error:
        raise LayoutError(f"{path}: malformed XML ({error})") from None
    subsets = {(image.get("subset") or "default") for image in images}
    lowered = {s.lower(): s for s in subsets}
    train = lowered.get("train") or ("default" if "default" in subsets else None)
    test = next((lowered[name] for name in TEST_SPLITS if name in lowered), None)
    if train is None:
        raise LayoutError(f"{path}: CVAT images of subsets {sorted(subsets)}, none of them train")
    keys = {"train_sets": [train], "test_sets": [test] if test else []}
    return Layout(DatasetFormat.cvat, "CVAT for images", (train, test), keys)


def _is_labelme(path: str) -> bool:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "shapes" in data and "imagePath" in data


def _labelme(root: str) -> Layout | None:
    files = sorted(glob.glob(os.path.join(glob.escape(root), "**", "*.json"), recursive=True))
    if not files or not _is_labelme(files[0]):
        return None
    folders = {d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))}
    if "train" in folders:
        test = _first(TEST_SPLITS, folders)
        train, keys_test = "train", [test] if test else []
    else:
        train, test, keys_test = ".", None, []
    keys = {"train_sets": [train], "test_sets": keys_test}
    return Layout(DatasetFormat.labelme, "LabelMe", (train, test), keys)


DETECTORS = (_voc, _roboflow, _coco, _yolo, _cvat, _labelme)


def detect_layout(root: str) -> Layout:
    """The one layout ``root`` holds (module docstring); :class:`LayoutError` when none or several."""
    if not os.path.isdir(root):
        raise LayoutError(f"dataset.root={root}: no such folder; set dataset.root=DIR to your dataset's folder")
    found = [layout for detect in DETECTORS if (layout := detect(root)) is not None]
    if not found:
        raise LayoutError(f"dataset.root={root}: no dataset layout found; looked for {LOOKED_FOR}")
    if len(found) > 1:
        names = ", ".join(layout.name for layout in found)
        raise LayoutError(f"dataset.root={root}: several layouts found ({names}); set dataset=<format> to choose one")
    return found[0]
