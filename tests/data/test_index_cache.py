"""The index cache of folder layouts (YOLO, LabelMe): a second parse reads the cache, which gives
the same split (describe included); any file the parse reads changing, or a split with problems,
parses again."""

import os

import numpy as np
import pytest

import frcnn.data.labelme
import frcnn.data.yolo
from frcnn.data.labelme import parse_labelme
from frcnn.data.yolo import parse_yolo
from tests.data.test_labelme import shape, write_labelme
from tests.data.test_yolo import write_yolo

YOLO_IMAGES = {
    "images/train/a.jpg": (40, 30, "0 0.5 0.5 0.5 0.5\n"),
    "images/train/b.png": (64, 48, "2 0.25 0.5 0.5 1.0\n\n1 0.75 0.25 0.25 0.5\n"),
    "images/train/c.jpg": (32, 32, None),  # no label file: no objects
    "images/val/d.jpg": (32, 32, "1 0.5 0.5 0.2 0.2\n"),
}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """An empty cache under tmp_path, used from the first image on; its folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("frcnn.data.index_cache.MIN_CACHED_IMAGES", 1)
    return tmp_path / "cache" / "frcnn" / "index"


@pytest.fixture
def count_parses(monkeypatch):
    """Counts the real parses of both layouts: {"yolo": n, "labelme": n}."""
    counts = {"yolo": 0, "labelme": 0}
    for name, module in (("yolo", frcnn.data.yolo), ("labelme", frcnn.data.labelme)):
        real = module._parse

        def counted(*args, _real=real, _name=name):
            counts[_name] += 1
            return _real(*args)

        monkeypatch.setattr(module, "_parse", counted)
    return counts


def assert_same_split(a, b):
    for field in ("image_ids", "dir_index", "file_names", "heights", "widths", "box_offsets", "boxes", "labels",
                  "difficult", "iscrowd", "object_ids"):  # fmt: skip
        x, y = getattr(a.index, field), getattr(b.index, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    assert a.index.image_dirs == b.index.image_dirs
    assert a.class_names == b.class_names and a.category_ids == b.category_ids
    assert a.problems == b.problems == []
    assert [a.describe(k) for k in range(a.index.num_boxes)] == [b.describe(k) for k in range(b.index.num_boxes)]


def test_yolo_split_is_read_from_the_cache_until_a_file_changes(tmp_path, cache, count_parses):
    root = write_yolo(tmp_path / "data", YOLO_IMAGES)
    first = parse_yolo(root, ["train", "val"])
    assert count_parses["yolo"] == 1 and len(list(cache.glob("*.npz"))) == 1
    cached = parse_yolo(root, ["train", "val"])
    assert count_parses["yolo"] == 1  # from the cache
    assert_same_split(first, cached)
    assert cached.describe(1) == (os.path.join(root, "labels", "train", "b.txt"), "line 1")
    assert cached.describe(2) == (os.path.join(root, "labels", "train", "b.txt"), "line 3")
    parse_yolo(root, ["train"])  # other sets, other classes: other entries
    parse_yolo(root, ["train", "val"], ["dog", "cat"])
    assert count_parses["yolo"] == 3
    os.utime(os.path.join(root, "labels", "train", "a.txt"), ns=(1, 1))  # a label file changed
    parse_yolo(root, ["train", "val"])
    assert count_parses["yolo"] == 4
    with open(os.path.join(root, "labels", "train", "c.txt"), "w") as f:  # a label file appeared
        f.write("0 0.5 0.5 0.5 0.5\n")
    assert parse_yolo(root, ["train", "val"]).index.num_boxes == 5
    assert count_parses["yolo"] == 5


def test_labelme_split_is_read_from_the_cache_until_a_file_changes(tmp_path, cache, count_parses):
    shapes = [shape("cat", [[30.5, 20], [10, 2.25]]), shape("dog", [[5, 6], [20, 4], [12, 18]], "polygon")]
    a = write_labelme(tmp_path / "train" / "a.json", shapes)
    write_labelme(tmp_path / "train" / "sub" / "b.json", [])
    write_labelme(tmp_path / "train" / "e.json", [shape("dog", [[1, 1], [9, 9]])], image="embedded")
    write_labelme(tmp_path / "test" / "c.json", [shape("bird", [[1, 1], [9, 9]])])
    for class_names in (None, ["dog", "cat"]):
        first = parse_labelme(str(tmp_path), ["train"], class_names)
        cached = parse_labelme(str(tmp_path), ["train"], class_names)
        assert_same_split(first, cached)
    assert count_parses["labelme"] == 2
    assert cached.describe(0) == (str(a), "shape 0 ('cat')")
    (tmp_path / "test" / "c.json").touch()  # the classes of class_names=None are every label under root
    os.utime(tmp_path / "test" / "c.json", ns=(1, 1))
    parse_labelme(str(tmp_path), ["train"])
    parse_labelme(str(tmp_path), ["train"], ["dog", "cat"])
    assert count_parses["labelme"] == 3
    os.utime(tmp_path / "train" / "a.png", ns=(1, 1))  # an image changed: checked when the cache is read
    parse_labelme(str(tmp_path), ["train"], ["dog", "cat"])
    assert count_parses["labelme"] == 4
    embedded = [os.path.join(d, "") for d in cached.index.image_dirs if "labelme_images" in d]
    assert len(embedded) == 1
    for name in os.listdir(embedded[0]):  # the embedded image's copy went: written again
        os.remove(os.path.join(embedded[0], name))
    again = parse_labelme(str(tmp_path), ["train"], ["dog", "cat"])
    assert count_parses["labelme"] == 5 and os.listdir(embedded[0])
    assert_same_split(cached, again)


def test_split_with_problems_is_never_cached(tmp_path, cache, count_parses):
    images = {**YOLO_IMAGES, "images/train/z.jpg": (32, 32, "7 0.5 0.5 0.2 0.2\n")}  # class 7 not in names
    root = write_yolo(tmp_path / "yolo", images)
    for _ in range(2):
        assert len(parse_yolo(root, ["train", "val"]).problems) == 1
    write_labelme(tmp_path / "lm" / "a.json", [shape("cat", [[1, 1], [9, 9]]), shape("cat", [[1, 1]], "point")])
    for _ in range(2):
        assert len(parse_labelme(str(tmp_path / "lm"), ["."]).problems) == 1
    assert count_parses == {"yolo": 2, "labelme": 2}
    assert not cache.exists() or not list(cache.glob("*.npz"))


def test_small_splits_are_not_cached(tmp_path, cache, monkeypatch, count_parses):
    monkeypatch.setattr("frcnn.data.index_cache.MIN_CACHED_IMAGES", 5)  # the split has 4 images
    root = write_yolo(tmp_path / "data", YOLO_IMAGES)
    parse_yolo(root, ["train", "val"])
    parse_yolo(root, ["train", "val"])
    assert count_parses["yolo"] == 2 and not cache.exists()
