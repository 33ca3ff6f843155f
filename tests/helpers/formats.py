"""A shapes dataset (tests.helpers.datasets: VOC layout + COCO files) written again in the other
layouts frcnn reads, by the tests' own hand: COCO (images/ + annotations/{train,val}.json), YOLO,
LabelMe and CVAT for images 1.1. The training split is ``train``, the test split ``val``."""

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

FORMATS = ("voc", "coco", "yolo", "labelme", "cvat")


def _coco(shapes: Path, split: str) -> dict:
    return json.loads((shapes / "coco" / f"instances_{split}.json").read_text())


def _objects(data: dict) -> dict[int, list[tuple[str, list[float]]]]:
    """image id -> [(class name, [x1, y1, x2, y2])] (continuous 0-based pixels)."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    objects = {image["id"]: [] for image in data["images"]}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        objects[a["image_id"]].append((names[a["category_id"]], [x, y, x + w, y + h]))
    return objects


def _splits(shapes: Path):
    """(output split, COCO dict) of the shapes set's train and test splits."""
    return (("train", _coco(shapes, "train")), ("val", _coco(shapes, "test")))


def write_coco(shapes: Path, dst: Path) -> Path:
    shutil.copytree(shapes / "JPEGImages", dst / "images")
    (dst / "annotations").mkdir()
    for split, data in _splits(shapes):
        (dst / "annotations" / f"{split}.json").write_text(json.dumps(data))
    return dst


def write_yolo(shapes: Path, dst: Path) -> Path:
    names = [c["name"] for c in sorted(_coco(shapes, "train")["categories"], key=lambda c: c["id"])]
    for split, data in _splits(shapes):
        objects = _objects(data)
        (dst / "images" / split).mkdir(parents=True)
        (dst / "labels" / split).mkdir(parents=True)
        for image in data["images"]:
            shutil.copy(shapes / "JPEGImages" / image["file_name"], dst / "images" / split)
            w, h = image["width"], image["height"]
            rows = [
                " ".join([str(names.index(name))] + [f"{v:.9f}" for v in ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h,
                                                                          (x2 - x1) / w, (y2 - y1) / h)])
                for name, (x1, y1, x2, y2) in objects[image["id"]]
            ]  # fmt: skip
            stem = os.path.splitext(image["file_name"])[0]
            (dst / "labels" / split / f"{stem}.txt").write_text("".join(row + "\n" for row in rows))
    (dst / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return dst


def write_labelme(shapes: Path, dst: Path) -> Path:
    for split, data in _splits(shapes):
        objects = _objects(data)
        (dst / split).mkdir(parents=True)
        for image in data["images"]:
            shutil.copy(shapes / "JPEGImages" / image["file_name"], dst / split)
            shapes_json = [
                {
                    "label": name,
                    "points": [[x1, y1], [x2, y2]],
                    "group_id": None,
                    "shape_type": "rectangle",
                    "flags": {},
                }
                for name, (x1, y1, x2, y2) in objects[image["id"]]
            ]
            record = {"version": "5.4.1", "flags": {}, "shapes": shapes_json, "imagePath": image["file_name"],
                      "imageData": None, "imageHeight": image["height"], "imageWidth": image["width"]}  # fmt: skip
            stem = os.path.splitext(image["file_name"])[0]
            (dst / split / f"{stem}.json").write_text(json.dumps(record))
    return dst


def write_cvat(shapes: Path, dst: Path) -> Path:
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    labels = ET.SubElement(ET.SubElement(ET.SubElement(root, "meta"), "task"), "labels")
    for category in sorted(_coco(shapes, "train")["categories"], key=lambda c: c["id"]):
        ET.SubElement(ET.SubElement(labels, "label"), "name").text = category["name"]
    shutil.copytree(shapes / "JPEGImages", dst / "images")
    for subset, (_, data) in zip(("Train", "Validation"), _splits(shapes)):
        objects = _objects(data)
        for image in data["images"]:
            attributes = {"id": str(image["id"]), "name": image["file_name"], "subset": subset,
                          "width": str(image["width"]), "height": str(image["height"])}  # fmt: skip
            element = ET.SubElement(root, "image", attributes)
            for name, (x1, y1, x2, y2) in objects[image["id"]]:
                box = {"label": name, "occluded": "0", "xtl": f"{x1:g}", "ytl": f"{y1:g}", "xbr": f"{x2:g}",
                       "ybr": f"{y2:g}", "z_order": "0"}  # fmt: skip
                ET.SubElement(element, "box", box)
    ET.ElementTree(root).write(dst / "annotations.xml")
    return dst


def write_voc(shapes: Path, dst: Path) -> Path:
    """The shapes set itself (VOC layout, sets train and test), without its COCO files."""
    shutil.copytree(shapes, dst, ignore=shutil.ignore_patterns("coco", ".shapes.lock", "shapes.json"))
    return dst


def write_format(name: str, shapes: Path, dst: Path) -> Path:
    """The shapes set at ``shapes`` written in layout ``name`` (one of FORMATS) into a new folder ``dst``."""
    dst.mkdir(parents=True)
    if name == "voc":
        dst.rmdir()
    return {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "labelme": write_labelme, "cvat": write_cvat}[
        name
    ](shapes, dst)
