"""frcnn/data/convert.py: every readable layout written as COCO, VOC and YOLO reads back (dataset=auto)
as its source; COCO -> YOLO -> COCO keeps the boxes within 1e-3 px and VOC -> COCO -> VOC the XML values;
images are linked (or copied), never re-encoded, under names unique in their folder."""

import errno
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from frcnn.data import convert
from frcnn.data.build import build_dataset
from frcnn.data.config import DatasetConfig, DatasetFormat, SplitFilesConfig
from frcnn.data.convert import (
    check_output,
    convert_splits,
    output_file_names,
    read_splits,
    voc_number,
    write_coco,
    write_voc,
    yolo_number,
)
from frcnn.data.validation import DatasetError
from tests.helpers.formats import FORMATS, write_format

OUTPUTS = ("coco", "voc", "yolo")


def auto(root) -> DatasetConfig:
    """dataset=auto on ``root``: the layout and its classes found from its files."""
    return DatasetConfig(name="auto", format=DatasetFormat.auto, root=str(root), classes=None)


def objects(dataset) -> dict[str, tuple]:
    """image file stem -> (height, width, class names, boxes [n, 4], difficult, iscrowd) of every image."""
    index, found = dataset.index, {}
    for i in range(len(dataset)):
        s = index.box_slice(i)
        names = [dataset.class_names[label - 1] for label in index.labels[s]]
        stem = Path(dataset.image_path(i)).stem
        found[stem] = (int(index.heights[i]), int(index.widths[i]), names, index.boxes[s], index.difficult[s],
                       index.iscrowd[s])  # fmt: skip
    return found


def assert_same_objects(converted, source, flags: bool = True) -> None:
    """The same images (by file stem), sizes, classes, boxes within 1e-3 px and (``flags``) difficult
    and crowd flags, and the same class names."""
    assert converted.class_names == source.class_names
    got, expected = objects(converted), objects(source)
    assert got.keys() == expected.keys()
    for stem, (height, width, names, boxes, difficult, iscrowd) in expected.items():
        assert got[stem][:3] == (height, width, names), stem
        np.testing.assert_allclose(got[stem][3], boxes, atol=1e-3, rtol=0, err_msg=stem)
        if flags:
            assert got[stem][4].tolist() == difficult.tolist() and got[stem][5].tolist() == iscrowd.tolist(), stem


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("layout", FORMATS)
def test_every_layout_converts_and_reads_back_as_its_source(layout, output, tiny_shapes_root, tmp_path):
    source = read_splits(auto(write_format(layout, tiny_shapes_root, tmp_path / "source")))
    written = convert_splits(source, str(tmp_path / "out"), output)
    counts = [(w.split, w.num_images, w.num_boxes) for w in written]
    assert counts == [("train", 12, source["train"].index.num_boxes), ("val", 6, source["val"].index.num_boxes)]
    converted = read_splits(auto(tmp_path / "out"))
    assert converted.keys() == {"train", "val"}
    for split in ("train", "val"):
        assert_same_objects(converted[split], source[split])


def perturbed_coco(tiny_shapes_root, tmp_path) -> Path:
    """The shapes set in the COCO layout with fractional boxes (x, y + 0.3137; w, h - 0.6011),
    category ids 7, 3, 5 (names ordered by id: square, triangle, circle) and one crowd box."""
    root = write_format("coco", tiny_shapes_root, tmp_path / "coco")
    new_id = {1: 7, 2: 3, 3: 5}
    for path in (root / "annotations").glob("*.json"):
        data = json.loads(path.read_text())
        for annotation in data["annotations"]:
            x, y, w, h = annotation["bbox"]
            annotation["bbox"] = [x + 0.3137, y + 0.3137, w - 0.6011, h - 0.6011]
            annotation["category_id"] = new_id[annotation["category_id"]]
        data["annotations"][0]["iscrowd"] = 1
        for category in data["categories"]:
            category["id"] = new_id[category["id"]]
        path.write_text(json.dumps(data))
    return root


def coco_boxes(path: Path) -> tuple[list[str], dict[str, list]]:
    """(category names by id, image file name -> [(category name, bbox)]) of a COCO file."""
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    file_of = {image["id"]: image["file_name"] for image in data["images"]}
    boxes = {name: [] for name in file_of.values()}
    for annotation in data["annotations"]:
        boxes[file_of[annotation["image_id"]]].append((names[annotation["category_id"]], annotation["bbox"]))
    return [names[k] for k in sorted(names)], boxes


def test_coco_to_yolo_to_coco_keeps_boxes_labels_and_classes(tiny_shapes_root, tmp_path):
    source = perturbed_coco(tiny_shapes_root, tmp_path)
    convert_splits(read_splits(auto(source)), str(tmp_path / "yolo"), "yolo")
    convert_splits(read_splits(auto(tmp_path / "yolo")), str(tmp_path / "back"), "coco")
    for split in ("train", "val"):
        names, expected = coco_boxes(source / "annotations" / f"{split}.json")
        names_back, got = coco_boxes(tmp_path / "back" / "annotations" / f"{split}.json")
        assert names_back == names == ["square", "triangle", "circle"]
        assert got.keys() == expected.keys()
        for file_name, objects in expected.items():
            assert [name for name, _ in got[file_name]] == [name for name, _ in objects], file_name
            got_boxes = np.array([box for _, box in got[file_name]]).reshape(-1, 4)
            boxes = np.array([box for _, box in objects]).reshape(-1, 4)
            np.testing.assert_allclose(got_boxes, boxes, atol=1e-3, rtol=0, err_msg=file_name)


def voc_values(root: Path, image_id: str) -> tuple:
    """(filename, size, [(name, xmin, ymin, xmax, ymax, difficult)]) of an XML file, as its text."""
    annotation = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
    size = tuple(annotation.findtext(f"size/{key}") for key in ("width", "height", "depth"))
    boxes = [
        (obj.findtext("name"), *(obj.findtext(f"bndbox/{key}") for key in ("xmin", "ymin", "xmax", "ymax")),
         obj.findtext("difficult"))
        for obj in annotation.iter("object")
    ]  # fmt: skip
    return annotation.findtext("filename"), size, boxes


def test_voc_to_coco_to_voc_writes_the_same_xml_values(tiny_shapes_root, tmp_path):
    source = write_format("voc", tiny_shapes_root, tmp_path / "voc")
    convert_splits(read_splits(auto(source)), str(tmp_path / "coco"), "coco")
    convert_splits(read_splits(auto(tmp_path / "coco")), str(tmp_path / "back"), "voc")
    back = tmp_path / "back"
    for split, back_split in (("train", "train"), ("test", "val")):
        ids = (source / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert (back / "ImageSets" / "Main" / f"{back_split}.txt").read_text().split() == ids
        for image_id in ids:
            assert voc_values(back, image_id) == voc_values(source, image_id), image_id
    assert any(voc_values(source, image_id)[2] for image_id in ids)  # objects were compared


def test_voc_xml_is_one_based_with_integers_or_three_decimals(tiny_shapes_root, tmp_path):
    """COCO (continuous 0-based) -> VOC: xmin = x1 + 1, ..., xmax = x2; a crowd box becomes difficult."""
    source = perturbed_coco(tiny_shapes_root, tmp_path)
    convert_splits(read_splits(auto(source)), str(tmp_path / "voc"), "voc")
    data = json.loads((source / "annotations" / "train.json").read_text())
    first = data["annotations"][0]
    image = next(image for image in data["images"] if image["id"] == first["image_id"])
    file_name, size, boxes = voc_values(tmp_path / "voc", Path(image["file_name"]).stem)
    x, y, w, h = first["bbox"]
    name = next(c["name"] for c in data["categories"] if c["id"] == first["category_id"])
    expected = (name, voc_number(x + 1), voc_number(y + 1), voc_number(x + w), voc_number(y + h), "1")
    assert (file_name, size) == (image["file_name"], (str(image["width"]), str(image["height"]), "3"))
    assert boxes[0] == expected


def test_number_formats():
    assert [voc_number(v) for v in (12.0, 12.25, 12.3456, 0.0004, 11.9999)] == ["12", "12.25", "12.346", "0", "12"]
    assert [yolo_number(v) for v in (0.5, 1 / 3, 0.000123456789, 1.0)] == ["0.5", "0.33333333", "0.00012345679", "1"]


def test_coco_and_yolo_files(tiny_shapes_root, tmp_path):
    source = read_splits(auto(write_format("voc", tiny_shapes_root, tmp_path / "voc")))
    convert_splits(source, str(tmp_path / "coco"), "coco")
    data = json.loads((tmp_path / "coco" / "annotations" / "val.json").read_text())
    assert data["categories"] == [{"id": k, "name": name} for k, name in enumerate(("circle", "square", "triangle"), 1)]
    assert [image["id"] for image in data["images"]] == list(range(1, 7))
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    for annotation in data["annotations"]:
        assert annotation["area"] == pytest.approx(annotation["bbox"][2] * annotation["bbox"][3])
        assert annotation["iscrowd"] == 0 and annotation["category_id"] in (1, 2, 3)

    convert_splits(source, str(tmp_path / "yolo"), "yolo")
    data_yaml = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    names = {0: "circle", 1: "square", 2: "triangle"}
    assert data_yaml == {"path": ".", "train": "images/train", "val": "images/val", "names": names}
    labels = sorted((tmp_path / "yolo" / "labels" / "val").iterdir())
    assert [p.stem for p in labels] == sorted(f"test_{i:06d}" for i in range(6))  # one per image, empty ones too
    rows = [row.split() for p in labels for row in p.read_text().splitlines()]
    assert len(rows) == source["val"].index.num_boxes
    assert all(len(row) == 5 and row[0] in "012" and all(0 < float(v) <= 1 for v in row[1:]) for row in rows)


def test_images_are_hard_linked_or_copied_never_re_encoded(tiny_shapes_root, tmp_path, monkeypatch):
    source = read_splits(auto(write_format("voc", tiny_shapes_root, tmp_path / "voc")))
    original = tmp_path / "voc" / "JPEGImages" / "train_000000.jpg"
    convert_splits(source, str(tmp_path / "linked"), "coco")
    assert os.path.samefile(tmp_path / "linked" / "images" / "train_000000.jpg", original)

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(convert.os, "link", cross_device)
    convert_splits(source, str(tmp_path / "copied"), "yolo")
    copy = tmp_path / "copied" / "images" / "train" / "train_000000.jpg"
    assert not os.path.samefile(copy, original) and copy.read_bytes() == original.read_bytes()
    assert copy.stat().st_mtime == original.stat().st_mtime  # copy2: the file's times too


def test_same_file_names_of_a_split_get_a_prefix(make_coco, tmp_path):
    """Two source folders hold a 000005.jpg: the second becomes <its position>_000005.jpg."""
    files = ["2007/000005.jpg", "2012/000005.jpg", "000004.jpg"]
    images = [{"id": k, "file_name": name, "width": 64, "height": 48} for k, name in enumerate(files, 1)]
    boxes = [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [4, 5, 26, 35]}]
    make_coco({"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "cat"}]})
    files_config = SplitFilesConfig(images="images", annotations="instances.json")
    cfg = DatasetConfig(name="coco", format=DatasetFormat.coco, root=str(tmp_path), classes=None, train=files_config)
    dataset = build_dataset(cfg, "train")
    names = ["000005.jpg", "1_000005.jpg", "000004.jpg"]
    assert output_file_names([dataset]) == [names]
    write_voc(dataset, str(tmp_path / "voc_out"), "train")
    write_coco(dataset, str(tmp_path / "coco_out"), "train")
    xml_files = sorted(p.name for p in (tmp_path / "voc_out" / "Annotations").iterdir())
    assert xml_files == ["000004.xml", "000005.xml", "1_000005.xml"]
    second = tmp_path / "images" / "2012" / "000005.jpg"
    assert os.path.samefile(tmp_path / "coco_out" / "images" / "1_000005.jpg", second)
    back = build_dataset(DatasetConfig(name="voc", root=str(tmp_path / "voc_out"), classes=["cat"]), "train")
    assert [Path(back.image_path(i)).name for i in range(len(back))] == names
    assert back.index.box_offsets.tolist() == [0, 0, 1, 1]
    assert back.index.boxes.tolist() == dataset.index.boxes.tolist() == [[4, 5, 30, 40]]


class _Images:
    """A dataset's image paths, all output_file_names reads."""

    def __init__(self, *paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def image_path(self, i):
        return self.paths[i]


def test_output_names_are_unique_across_the_splits_of_a_folder_ignoring_case():
    train = _Images("a/x.jpg", "b/X.png", "a/1_x.jpg")
    val = _Images("c/x.jpg", "c/y.jpg")
    assert output_file_names([train, val]) == [["x.jpg", "1_1_X.png", "1_x.jpg"], ["0_x.jpg", "y.jpg"]]
    assert output_file_names([val]) == [["x.jpg", "y.jpg"]]


def test_a_layout_without_a_test_split_converts_its_whole_training_split(tiny_shapes_root, tmp_path):
    source = write_format("voc", tiny_shapes_root, tmp_path / "voc")
    (source / "ImageSets" / "Main" / "test.txt").unlink()
    splits = read_splits(auto(source))
    assert list(splits) == ["train"] and len(splits["train"]) == 12  # nothing held out
    convert_splits(splits, str(tmp_path / "yolo"), "yolo")
    assert "val" not in yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert sorted(os.listdir(tmp_path / "yolo" / "images")) == ["train"]


def test_a_missing_image_is_refused_before_anything_is_written(tiny_shapes_root, tmp_path):
    source = write_format("voc", tiny_shapes_root, tmp_path / "voc")
    splits = read_splits(auto(source))
    (source / "JPEGImages" / "test_000003.jpg").unlink()
    with pytest.raises(DatasetError, match="test_000003.jpg: image file not found"):
        convert_splits(splits, str(tmp_path / "out"), "coco")
    assert not (tmp_path / "out").exists()


def test_check_output(tmp_path):
    check_output(str(tmp_path / "new"), False, str(tmp_path / "source"))
    (tmp_path / "out").mkdir()
    check_output(str(tmp_path / "out"), False, str(tmp_path / "source"))  # empty
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty: .* overwrite=true"):
        check_output(str(tmp_path / "out"), False, str(tmp_path / "source"))
    check_output(str(tmp_path / "out"), True, str(tmp_path / "source"))
    with pytest.raises(ValueError, match="the dataset's own folder"):
        check_output(str(tmp_path / "out"), True, str(tmp_path / "out"))
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output(str(tmp_path / "out" / "notes.txt"), True, str(tmp_path / "source"))


def test_overwriting_replaces_the_written_files_only(tiny_shapes_root, tmp_path):
    source = read_splits(auto(write_format("voc", tiny_shapes_root, tmp_path / "voc")))
    out = tmp_path / "out"
    convert_splits(source, str(out), "voc")
    (out / "notes.txt").write_text("mine")
    (out / "Annotations" / "train_000000.xml").write_text("garbage")
    (out / "JPEGImages" / "train_000001.jpg").unlink()
    (out / "JPEGImages" / "train_000001.jpg").write_bytes(b"another file")
    convert_splits(source, str(out), "voc")
    assert (out / "notes.txt").read_text() == "mine"
    image = Path("JPEGImages") / "train_000001.jpg"
    assert os.path.samefile(out / image, tmp_path / "voc" / image)
    assert_same_objects(read_splits(auto(out))["train"], source["train"])
