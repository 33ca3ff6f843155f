"""YOLO (Ultralytics) parsing against tiny datasets written by the test: boxes, splits, every fault."""

import os
import re

import pytest
import torch
import yaml
from PIL import Image

from frcnn.data.config import DatasetConfig
from frcnn.data.transforms import build_transform
from frcnn.data.validation import DatasetError
from frcnn.data.yolo import YOLODetection, find_data_yaml, folder_images, label_path, parse_yolo
from tests.helpers.datasets import write_image

TRANSFORM = build_transform(DatasetConfig(test_min_size=64, max_size=128), train=False)
NAMES = ["cat", "dog", "bird"]


def write_yolo(root, images: dict, data: dict | None = None, yaml_name: str = "data.yaml") -> str:
    """Write ``images`` ``{"images/train/a.jpg": (width, height, label text or None)}`` (None: no label
    file) under ``root``, their label files by Ultralytics' rule and the yaml ``data`` (default: train
    and val folders, NAMES); returns ``root``."""
    for rel, (width, height, labels) in images.items():
        path = os.path.join(root, rel)
        write_image(path, width, height)
        if labels is not None:
            os.makedirs(os.path.dirname(label_path(path)), exist_ok=True)
            with open(label_path(path), "w") as f:
                f.write(labels)
    data = {"train": "images/train", "val": "images/val", "names": NAMES} if data is None else data
    with open(os.path.join(root, yaml_name), "w") as f:
        yaml.safe_dump(data, f)
    return str(root)


def assert_boxes(boxes: torch.Tensor, expected: list) -> None:
    """``boxes`` [N, 4] are ``expected`` within 1e-4 pixels."""
    torch.testing.assert_close(boxes, torch.tensor(expected, dtype=torch.float32).reshape(-1, 4), atol=1e-4, rtol=0)


def dataset(root, sets=("train",), class_names=None, **kwargs) -> YOLODetection:
    return YOLODetection(root, list(sets), class_names, transform=TRANSFORM, train=False, **kwargs)


def problems(root, sets=("train",), class_names=None) -> list[str]:
    return [str(p) for p in parse_yolo(root, list(sets), class_names).problems]


def test_boxes_are_the_normalised_rows_in_pixels(tmp_path):
    root = write_yolo(tmp_path, {
        "images/train/a.jpg": (40, 30, "0 0.5 0.5 0.5 0.5\n"),
        "images/train/b.png": (64, 48, "2 0.25 0.5 0.5 1.0\n1 0.75 0.25 0.25 0.5\n"),
    })  # fmt: skip
    ds = dataset(root)
    assert ds.image_ids == ["images/train/a", "images/train/b"]
    assert ds.class_names == NAMES and ds.category_ids == [0, 1, 2]
    a = ds.get_annotation(0)
    assert (a["height"], a["width"]) == (30, 40)
    assert_boxes(a["boxes"], [[10, 7.5, 30, 22.5]])
    assert a["boxes"].dtype == torch.float32 and a["labels"].tolist() == [1]
    b = ds.get_annotation(1)
    assert_boxes(b["boxes"], [[0, 0, 32, 48], [40, 0, 56, 24]])
    assert b["labels"].tolist() == [3, 2]
    assert not b["difficult"].any() and not b["iscrowd"].any()
    assert ds.image_path(1) == os.path.join(root, "images", "train", "b.png")


def test_names_as_a_map_are_ordered_by_id(tmp_path):
    for names in ({2: "bird", 0: "cat", 1: "dog"}, {"1": "dog", "0": "cat", "2": "bird"}):
        root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "2 0.5 0.5 0.2 0.2\n")},
                          {"train": "images/train", "names": names, "nc": 3})  # fmt: skip
        ds = dataset(root)
        assert ds.class_names == NAMES and ds.category_ids == [0, 1, 2]
        assert ds.get_annotation(0)["labels"].tolist() == [3]


def test_a_list_file_and_a_list_of_folders(tmp_path):
    images = {
        "images/train/a.jpg": (40, 30, "0 0.5 0.5 0.5 0.5\n"),
        "images/train/sub/b.jpg": (40, 30, "1 0.5 0.5 0.5 0.5\n"),
        "images/extra/c.jpg": (32, 32, "2 0.5 0.5 0.5 0.5\n"),
    }
    write_yolo(tmp_path / "data", images, {
        "path": "data", "train": ["images/train", "images/extra"], "val": "val.txt", "names": NAMES,
    })  # fmt: skip
    # the yaml above its dataset folder: `path` is relative to the yaml's folder, the splits to `path`
    os.replace(tmp_path / "data" / "data.yaml", tmp_path / "data.yaml")
    (tmp_path / "data" / "val.txt").write_text("./images/extra/c.jpg\n\nimages/train/sub/b.jpg\n")
    train = dataset(str(tmp_path), ["train"])
    assert train.image_ids == ["images/train/a", "images/train/sub/b", "images/extra/c"]
    assert [int(train.get_annotation(i)["labels"][0]) for i in range(3)] == [1, 2, 3]
    val = dataset(str(tmp_path), ["val"])
    assert val.image_ids == ["images/extra/c", "images/train/sub/b"]


def test_an_image_in_two_asked_splits_is_a_problem(tmp_path):
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "")},
                      {"train": "images/train", "val": ["images/train"], "names": NAMES})  # fmt: skip
    path = os.path.join(root, "images", "train", "a.jpg")
    assert problems(root, ["train", "val"]) == [
        f"{path}: image id 'images/train/a' listed twice (also in split 'train')"
    ]
    write_image(os.path.join(root, "images", "train", "a.png"), 40, 30)  # a second file of the same id
    assert problems(root, ["train"]) == [f"{path[:-3]}png: image id 'images/train/a' listed twice (also in {path})"]


def test_no_label_file_and_an_empty_one_are_images_without_objects(tmp_path):
    root = write_yolo(tmp_path, {
        "images/train/none.jpg": (40, 30, None),
        "images/train/empty.jpg": (40, 30, ""),
        "images/train/blank.jpg": (40, 30, "\n  \n"),
    })  # fmt: skip
    ds = dataset(root)
    assert len(ds) == 3 and ds.index.num_boxes == 0
    assert not os.path.exists(os.path.join(root, "labels", "train", "none.txt"))


def test_a_segment_row_becomes_its_bounding_box(tmp_path):
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "1 0.1 0.2 0.5 0.1 0.3 0.9 0.2 0.4\n")})
    assert_boxes(dataset(root).get_annotation(0)["boxes"], [[4, 3, 20, 27]])


@pytest.mark.parametrize(
    "row, reason",
    [
        ("0 0.5 0.5 0.5", "4 values; expected 5 (class cx cy w h) or an odd number >= 7"),
        ("0 0.1 0.1 0.2 0.2 0.3", "6 values; expected 5"),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "8 values; expected 5"),
        ("0 0.5 abc 0.5 0.5", "non-numeric value 'abc' in column 3"),
        ("1.5 0.5 0.5 0.5 0.5", "class id '1.5' is not an integer"),
        ("cat 0.5 0.5 0.5 0.5", "class id 'cat' is not an integer"),
        ("3 0.5 0.5 0.5 0.5", r"class id 3 is not in names (ids 0..2)"),
        ("-1 0.5 0.5 0.5 0.5", r"class id -1 is not in names (ids 0..2)"),
    ],
)
def test_a_bad_row_names_the_file_the_line_and_the_reason(tmp_path, row, reason):
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, f"1.0 0.5 0.5 0.5 0.5\n\n{row}\n")})
    label_file = os.path.join(root, "labels", "train", "a.txt")
    with pytest.raises(DatasetError, match=re.escape(f"{label_file}: line 3: {reason}")):
        dataset(root)
    assert len(problems(root)) == 1


def test_yaml_faults_are_problems_naming_the_yaml(tmp_path):
    data = {"train": "images/train", "val": "images/missing", "names": {0: "cat", 2: "bird"}, "nc": 3}
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "0 0.5 0.5 0.2 0.2\n")}, data)
    yaml_path = os.path.join(root, "data.yaml")
    missing = os.path.join(root, "images", "missing")
    assert problems(root, ["train", "val", "test"], ["cat", "dog"]) == [
        f"{yaml_path}: names: class ids must be 0..1 without gaps, got [0, 2]",
        f"{yaml_path}: nc: nc is 3 but names has 2 classes",
        f"{yaml_path}: names: class 'dog' of dataset.classes is not in names (['cat', 'bird'])",
        f"{yaml_path}: val: {missing}: no such folder or image list file",
        f"{yaml_path}: test: split not set in the dataset yaml",
    ]
    with pytest.raises(DatasetError, match=re.escape(f"{yaml_path}: names: class ids must be 0..1")):
        dataset(root)


def test_a_row_of_a_class_id_outside_a_gapped_map_names_its_ids(tmp_path):
    data = {"train": "images/train", "names": {0: "cat", 2: "bird"}}
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "1 0.5 0.5 0.2 0.2\n")}, data)
    assert problems(root)[-1].endswith("labels/train/a.txt: line 1: class id 1 is not in names (ids 0, 2)")


def test_structural_faults_raise(tmp_path):
    with pytest.raises(DatasetError, match="not a YOLO dataset: none of data.yaml, dataset.yaml, data.yml found"):
        parse_yolo(str(tmp_path), ["train"])
    (tmp_path / "data.yaml").write_text("train: [unclosed\n")
    with pytest.raises(DatasetError, match="cannot read the dataset yaml"):
        parse_yolo(str(tmp_path), ["train"])
    (tmp_path / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(DatasetError, match="names: expected a list or a map"):
        parse_yolo(str(tmp_path), ["train"])
    (tmp_path / "data.yaml").write_text("path: elsewhere\ntrain: images/train\nnames: [cat]\n")
    with pytest.raises(DatasetError, match=re.escape(f"path: {tmp_path / 'elsewhere'} is not a folder")):
        parse_yolo(str(tmp_path), ["train"])


def test_an_image_that_cannot_be_opened_is_named(tmp_path):
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "")})
    (tmp_path / "images" / "train" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "list.txt").write_text("images/train/a.jpg\nimages/train/gone.jpg\nnotes.md\n")
    with open(tmp_path / "data.yaml", "w") as f:
        yaml.safe_dump({"train": "images/train", "val": "list.txt", "names": NAMES}, f)
    broken = os.path.join(root, "images", "train", "broken.jpg")
    found = problems(root)
    assert len(found) == 1 and found[0].startswith(f"{broken}: cannot open image (")
    assert problems(root, ["val"]) == [
        f"{tmp_path / 'list.txt'}: line 3: 'notes.md' is not an image file (by its extension)",
        f"{os.path.join(root, 'images', 'train', 'gone.jpg')}: image file not found",
    ]
    with pytest.raises(DatasetError, match=re.escape(broken)):
        dataset(root)


@pytest.mark.parametrize("policy", ["error", "clip", "drop"])
def test_coordinates_outside_the_image_follow_invalid_boxes(tmp_path, policy):
    rows = "0 0.5 0.5 0.5 0.5\n1 0.9 0.5 0.4 0.2\n2 0.5 0.5 0.0 0.2\n"  # the 2nd reaches past x = 1, the 3rd is empty
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, rows)})
    label_file = os.path.join(root, "labels", "train", "a.txt")
    if policy == "error":
        with pytest.raises(DatasetError, match=r"2 problems") as info:
            dataset(root, invalid_boxes=policy)
        assert f"{label_file}: line 2: box extends outside the image: [28, 12, 44, 18] in image 40x30" in str(
            info.value
        )
        assert f"{label_file}: line 3: degenerate box" in str(info.value)
        return
    boxes = dataset(root, invalid_boxes=policy).get_annotation(0)["boxes"]
    clipped = [[28, 12, 40, 18]] if policy == "clip" else []
    assert_boxes(boxes, [[10, 7.5, 30, 22.5], *clipped])


def test_classes_are_selected_by_name(tmp_path):
    rows = "0 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n"
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, rows)})
    label_file = os.path.join(root, "labels", "train", "a.txt")
    with pytest.raises(DatasetError, match=re.escape(f"{label_file}: line 2: unknown class name 'dog'")):
        dataset(root, class_names=["bird", "cat"])
    ds = dataset(root, class_names=["bird", "cat"], unlisted_classes="ignore")
    assert ds.class_names == ["bird", "cat"] and ds.category_ids == [2, 0]
    a = ds.get_annotation(0)
    assert a["labels"].tolist() == [2, 1]
    assert_boxes(a["boxes"], [[10, 7.5, 30, 22.5], [18, 13.5, 22, 16.5]])


def test_an_exif_rotated_jpeg_has_its_displayed_size(tmp_path):
    root = write_yolo(tmp_path, {"images/train/a.jpg": (40, 30, "0 0.5 0.5 0.5 0.5\n")})
    path = os.path.join(root, "images", "train", "a.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x30, displayed rotated a quarter turn: 30 wide, 40 high
    Image.open(path).save(path, exif=exif)
    ds = dataset(root)
    a = ds.get_annotation(0)
    assert (a["height"], a["width"]) == (40, 30)
    assert_boxes(a["boxes"], [[7.5, 10, 22.5, 30]])
    image, target = ds[0]  # the decoded size is checked against the index's
    assert target["orig_size"] == (40, 30) and image.shape[-2:] == (int(64 * 40 / 30), 64)


def test_items_go_through_the_dataset_path(tmp_path):
    root = write_yolo(
        tmp_path, {"images/train/a.jpg": (40, 30, "1 0.5 0.5 0.5 0.5\n"), "images/train/b.jpg": (32, 32, "")}
    )
    cfg = DatasetConfig(min_size=[60], max_size=128, test_min_size=60)
    for train in (False, True):
        ds = YOLODetection(root, ["train"], transform=build_transform(cfg, train=train), train=train)
        image, target = ds[0]
        assert image.dtype == torch.float32 and image.shape == (3, 60, 80)
        assert target["image_id"] == "images/train/a" and target["labels"].tolist() == [2]
        if not train:
            assert_boxes(target["boxes"], [[20, 15, 60, 45]])
        assert ds[1][1]["boxes"].shape == (0, 4)


def test_folder_images_recursive_sorted_images_only(tmp_path):
    for rel in ("b.JPG", "a/z.png", "a/y.webp", "c.txt", ".hidden.jpg", ".cache/d.jpg", "e.TIFF"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = [os.path.relpath(p, tmp_path) for p in folder_images(str(tmp_path))]
    assert found == ["a/y.webp", "a/z.png", "b.JPG", "e.TIFF"]


def test_label_path_replaces_the_last_images_folder():
    assert label_path("/d/images/train/images/a.b.jpg") == "/d/images/train/labels/a.b.txt"
    assert label_path("/d/train/a.png") == "/d/train/a.txt"  # no images folder: beside the image
    assert label_path("/images/x.jpg") == "/labels/x.txt"


def test_find_data_yaml_and_roboflow_paths(tmp_path):
    assert find_data_yaml(str(tmp_path)) is None
    # a Roboflow export: `../train/images` in a yaml beside train/ means train/images
    root = write_yolo(tmp_path, {"train/images/a.jpg": (40, 30, "0 0.5 0.5 0.5 0.5\n")},
                      {"train": "../train/images", "names": NAMES}, yaml_name="dataset.yaml")  # fmt: skip
    assert find_data_yaml(root) == os.path.join(root, "dataset.yaml")
    assert find_data_yaml(os.path.join(root, "dataset.yaml")) == os.path.join(root, "dataset.yaml")
    ds = dataset(root)
    assert ds.image_ids == ["train/images/a"] and len(ds.get_annotation(0)["boxes"]) == 1
