"""``dataset=auto`` (frcnn.data.detect, frcnn.data.build): each layout is found by its files, read
with the detected keys, and named in one log line; a folder with none or several is one error."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from frcnn.data import build_dataset
from frcnn.data.config import DatasetConfig, DatasetFormat
from frcnn.data.detect import LayoutError, detect_layout


def auto_config(root: Path, **overrides):
    cfg = OmegaConf.structured(DatasetConfig(name="auto", format=DatasetFormat.auto, root=str(root), classes=None))
    cfg.min_size, cfg.test_min_size, cfg.max_size, cfg.num_workers = [64], 64, 128, 0
    return OmegaConf.merge(cfg, overrides)


def coco_layout(shapes: Path, root: Path) -> Path:
    """docs/own-data.md's COCO layout: images/ + annotations/{train,val}.json."""
    shutil.copytree(shapes / "JPEGImages", root / "images")
    (root / "annotations").mkdir()
    shutil.copy(shapes / "coco" / "instances_train.json", root / "annotations" / "train.json")
    shutil.copy(shapes / "coco" / "instances_test.json", root / "annotations" / "val.json")
    return root


def roboflow_layout(shapes: Path, root: Path) -> Path:
    """A Roboflow COCO export: train/ and valid/, each with its images and _annotations.coco.json,
    and the project's placeholder category 0 (the supercategory of every class)."""
    for split, source in (("train", "train"), ("valid", "test")):
        (root / split).mkdir(parents=True)
        data = json.loads((shapes / "coco" / f"instances_{source}.json").read_text())
        for image in data["images"]:
            shutil.copy(shapes / "JPEGImages" / image["file_name"], root / split)
        for category in data["categories"]:
            category["supercategory"] = "shapes-xyz"
        data["categories"].insert(0, {"id": 0, "name": "shapes-xyz", "supercategory": "none"})
        (root / split / "_annotations.coco.json").write_text(json.dumps(data))
    return root


LAYOUTS = [("voc", "VOC", ("train", "test")), ("coco", "COCO", ("train", "val")),
           ("roboflow", "Roboflow COCO", ("train", "valid"))]  # fmt: skip


@pytest.mark.parametrize("layout, name, splits", LAYOUTS)
def test_each_layout_is_found_read_and_named_in_one_line(tiny_shapes_root, tmp_path, caplog, layout, name, splits):
    root = {
        "voc": lambda: tiny_shapes_root,
        "coco": lambda: coco_layout(tiny_shapes_root, tmp_path),
        "roboflow": lambda: roboflow_layout(tiny_shapes_root, tmp_path),
    }[layout]()
    found = detect_layout(str(root))
    assert (found.name, found.splits) == (name, splits)
    with caplog.at_level(logging.INFO, logger="frcnn.data.build"):
        train, test = build_dataset(auto_config(root), "train"), build_dataset(auto_config(root), "test")
    assert (len(train), len(test)) == (12, 6)
    assert train.class_names == test.class_names == ["circle", "square", "triangle"]  # no placeholder
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dataset=auto")]
    assert len(lines) == 2 and f"holds a {name} layout" in lines[0]
    assert f"train: 12 images, {train.index.num_boxes} boxes, 3 classes (circle, square, triangle)" in lines[0]


def test_a_vocdevkit_trains_on_07_12_trainval_and_tests_on_07_test(tmp_path):
    for year, splits in (("2007", ("trainval", "test")), ("2012", ("trainval",))):
        main = tmp_path / f"VOC{year}" / "ImageSets" / "Main"
        main.mkdir(parents=True)
        for split in splits:
            (main / f"{split}.txt").write_text("")
    found = detect_layout(str(tmp_path))
    assert found.keys == {"train_sets": ["2007-trainval", "2012-trainval"], "test_sets": ["2007-test"]}
    assert found.class_names is None  # the reader's 20 VOC classes


def test_yolo_cvat_and_labelme_are_found_by_their_files(tmp_path):
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    assert detect_layout(str(yolo)).format is DatasetFormat.yolo
    assert detect_layout(str(yolo)).keys == {"train_sets": ["train"], "test_sets": ["val"]}
    cvat = tmp_path / "cvat"
    cvat.mkdir()
    (cvat / "annotations.xml").write_text(
        '<annotations><image id="0" name="a.jpg" subset="Train" width="9" height="9"/>'
        '<image id="1" name="b.jpg" subset="Validation" width="9" height="9"/></annotations>'
    )
    assert detect_layout(str(cvat)).keys == {"train_sets": ["Train"], "test_sets": ["Validation"]}
    labelme = tmp_path / "labelme"
    for split in ("train", "val"):
        (labelme / split).mkdir(parents=True)
        (labelme / split / "a.json").write_text(json.dumps({"shapes": [], "imagePath": "a.jpg"}))
    assert detect_layout(str(labelme)).format is DatasetFormat.labelme
    assert detect_layout(str(labelme)).splits == ("train", "val")


def test_no_layout_or_several_is_one_line_naming_what_was_looked_for(tmp_path, tiny_shapes_root):
    with pytest.raises(LayoutError, match=r"no dataset layout found; looked for VOC .*YOLO \(data.yaml\)"):
        build_dataset(auto_config(tmp_path), "train")
    both = tmp_path / "both"
    shutil.copytree(tiny_shapes_root, both)
    (both / "data.yaml").write_text("train: images\nnames: [a]\n")
    with pytest.raises(LayoutError, match=r"several layouts found \(VOC, YOLO \(data.yaml\)\); set dataset=<format>"):
        detect_layout(str(both))
    with pytest.raises(LayoutError, match="no such folder"):
        detect_layout(str(tmp_path / "missing"))


def test_a_layout_without_a_validation_split_holds_one_out_and_keeps_its_lists(tiny_shapes_root, tmp_path):
    root = coco_layout(tiny_shapes_root, tmp_path / "data")
    (root / "annotations" / "val.json").unlink()
    split_file = tmp_path / "run" / "dataset_split.json"
    cfg = auto_config(root, val_fraction=0.25, split_file=str(split_file))
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert len(train) + len(val) == 12 and 2 <= len(val) <= 4
    assert not set(train.image_ids) & set(val.image_ids)
    assert val.transform is not train.transform and not val.train
    listed = json.loads(split_file.read_text())
    assert (listed["train"], listed["val"]) == ([str(i) for i in train.image_ids], [str(i) for i in val.image_ids])
    # read back, not drawn again: another seed changes nothing once the lists exist
    again = auto_config(root, val_fraction=0.25, split_file=str(split_file), seed=7)
    assert build_dataset(again, "test").image_ids == val.image_ids
