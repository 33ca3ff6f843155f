"""LabelMe parsing against JSON files written by the test: shapes to boxes, splits as subfolders,
embedded images, every fault named."""

import base64
import io
import json

import pytest
import torch
from PIL import Image

from frcnn.data.labelme import LabelMeDetection, labelme_classes, parse_labelme
from frcnn.data.transforms import DetectionTransform
from frcnn.data.validation import DatasetError
from tests.helpers.datasets import write_image

TRANSFORM = DetectionTransform((64,), 128)


def shape(label, points, shape_type="rectangle"):
    record = {"label": label, "points": points, "group_id": None, "flags": {}}
    if shape_type is not None:
        record["shape_type"] = shape_type
    return record


def write_labelme(path, shapes, width=48, height=32, image="file", image_path=None):
    """A LabelMe JSON at ``path`` (a Path); ``image``: "file" (written beside it), "embedded"
    (imageData only) or None (neither)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image_path = image_path or path.with_suffix(".png").name
    data = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": height, "imageWidth": width}  # fmt: skip
    if image == "file":
        write_image(str(path.parent / image_path), width, height)
    elif image == "embedded":
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
        data["imageData"] = base64.b64encode(buffer.getvalue()).decode()
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def dataset(tmp_path):
    """train/a (every box shape), train/sub/b (no shapes), test/c (a 'bird'): the root."""
    write_labelme(tmp_path / "train" / "a.json", [
        shape("cat", [[30.5, 20], [10, 2.25]]),  # corners in any order
        shape("dog", [[5, 6], [20, 4], [12, 18]], "polygon"),
        shape("cat", [[24, 16], [27, 20]], "circle"),  # radius 5
        shape("dog", [[1, 2], [3, 4], [2, 9]], None),  # no shape_type: a polygon
    ])  # fmt: skip
    write_labelme(tmp_path / "train" / "sub" / "b.json", [])
    write_labelme(tmp_path / "test" / "c.json", [shape("bird", [[1, 1], [9, 9]])])
    return tmp_path


def test_labelme_shapes_become_boxes(dataset):
    ds = LabelMeDetection(str(dataset), ["train"], transform=TRANSFORM, train=False)
    assert ds.class_names == ["bird", "cat", "dog"]  # every label under root, sorted: train and test agree
    assert ds.category_ids == [1, 2, 3]
    assert ds.image_ids == ["train/a", "train/sub/b"]
    a = ds.get_annotation(0)
    assert (a["height"], a["width"]) == (32, 48)
    expected = [[10, 2.25, 30.5, 20], [5, 4, 20, 18], [19, 11, 29, 21], [1, 2, 3, 9]]
    assert torch.allclose(a["boxes"], torch.tensor(expected, dtype=torch.float32), atol=1e-4)
    assert a["labels"].tolist() == [2, 3, 2, 3]
    assert not a["difficult"].any() and not a["iscrowd"].any()
    assert ds.get_annotation(1)["boxes"].shape == (0, 4)  # an image without objects is kept
    assert ds.image_path(1) == str(dataset / "train" / "sub" / "b.png")
    test = LabelMeDetection(str(dataset), ["test"], transform=TRANSFORM, train=False)
    assert test.class_names == ds.class_names and test.get_annotation(0)["labels"].tolist() == [1]


def test_labelme_root_set_and_given_classes(dataset):
    assert labelme_classes(str(dataset)) == ["bird", "cat", "dog"]
    ds = LabelMeDetection(str(dataset), ["."], ["dog", "cat", "bird"], transform=TRANSFORM, train=False)
    assert ds.image_ids == ["test/c", "train/a", "train/sub/b"]  # every JSON under root, sorted
    assert ds.category_ids == [1, 2, 3] and ds.get_annotation(1)["labels"].tolist() == [2, 1, 2, 1]


def test_labelme_unlisted_classes(dataset):
    with pytest.raises(DatasetError, match=r"a\.json: shape 1 \('dog'\): unknown class name 'dog'"):
        LabelMeDetection(str(dataset), ["train"], ["cat"], transform=TRANSFORM, train=False)
    ds = LabelMeDetection(str(dataset), ["train"], ["cat"], unlisted_classes="ignore", transform=TRANSFORM,
                          train=False)  # fmt: skip
    assert ds.class_names == ["cat"] and ds.get_annotation(0)["labels"].tolist() == [1, 1]


def test_labelme_item_goes_through_the_dataset_path(dataset):
    ds = LabelMeDetection(str(dataset), ["train"], transform=TRANSFORM, train=True)
    image, target = ds[0]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 64, 96)  # 32x48 resized to short side 64
    assert target["image_id"] == "train/a" and target["orig_size"] == (32, 48)
    assert torch.allclose(target["boxes"][0], torch.tensor([20, 4.5, 61, 40]), atol=1e-4)
    assert ds[1][1]["boxes"].shape == (0, 4)


def test_labelme_embedded_image_is_decoded_when_the_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_labelme(tmp_path / "data" / "e.json", [shape("cat", [[1, 1], [8, 8]])], image="embedded",
                  image_path="../photos/e.png")  # fmt: skip
    ds = LabelMeDetection(str(tmp_path / "data"), ["."], transform=TRANSFORM, train=False)
    cached = list((tmp_path / "cache" / "frcnn" / "labelme_images").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".png" and ds.image_path(0) == str(cached[0])
    image, target = ds[0]
    assert tuple(image.shape) == (3, 64, 96) and target["image_id"] == "e"
    mtime = cached[0].stat().st_mtime_ns
    LabelMeDetection(str(tmp_path / "data"), ["."], transform=TRANSFORM, train=False)
    assert cached[0].stat().st_mtime_ns == mtime  # written once


def test_labelme_image_file_preferred_over_embedded_data(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = write_labelme(tmp_path / "a.json", [], image="embedded")
    write_image(str(tmp_path / "a.png"), 48, 32)
    with pytest.raises(DatasetError, match="no shape label in any LabelMe file: set dataset.classes"):
        LabelMeDetection(str(tmp_path), ["."], transform=TRANSFORM, train=False)
    ds = LabelMeDetection(str(tmp_path), ["."], ["cat"], transform=TRANSFORM, train=False)
    assert ds.image_path(0) == str(path.with_suffix(".png")) and not (tmp_path / "cache").exists()


def test_labelme_faults_are_named(tmp_path):
    write_labelme(tmp_path / "s" / "ok.json", [
        shape("road", [[1, 1], [5, 5]], "line"),
        shape("cat", [[1, 1], [5, 5]], "polygon"),
        shape("cat", [[1, "x"]], "rectangle"),
    ])  # fmt: skip
    write_labelme(tmp_path / "s" / "lost.json", [], image=None)
    (tmp_path / "s" / "broken.json").write_text("{not json")
    (tmp_path / "s" / "nosize.json").write_text(json.dumps({"shapes": [], "imagePath": "x.png", "imageWidth": 0}))
    with pytest.raises(DatasetError) as info:
        LabelMeDetection(str(tmp_path), ["s"], ["cat", "road"], transform=TRANSFORM, train=False)
    message = str(info.value)
    assert "broken.json: not valid JSON" in message
    assert "lost.json: image file" in message and "lost.png' (imagePath) not found and no imageData" in message
    assert "nosize.json: not a LabelMe file: missing or invalid 'imageHeight': None, 'imageWidth': 0" in message
    assert "ok.json: shape 0 ('road'): shape_type 'line' is not a box (rectangle, polygon or circle)" in message
    assert "ok.json: shape 1 ('cat'): polygon has 2 points (needs at least 3)" in message
    assert "ok.json: shape 2 ('cat'): 'points' is not a list of [x, y] numbers" in message
    assert "6 problems" in message
    with pytest.raises(DatasetError, match=r"LabelMe folder of set 'val' not found"):
        parse_labelme(str(tmp_path), ["val"], ["cat"])


def test_labelme_box_outside_the_image_follows_invalid_boxes(tmp_path):
    write_labelme(tmp_path / "a.json", [shape("cat", [[40, 10], [60, 20]]), shape("cat", [[1, 1], [4, 4]])])
    with pytest.raises(DatasetError, match=r"a\.json: shape 0 \('cat'\): box extends outside the image"):
        LabelMeDetection(str(tmp_path), ["."], transform=TRANSFORM, train=False)
    ds = LabelMeDetection(str(tmp_path), ["."], invalid_boxes="clip", transform=TRANSFORM, train=False)
    assert ds.get_annotation(0)["boxes"].tolist() == [[40, 10, 48, 20], [1, 1, 4, 4]]


def test_labelme_windows_image_path(tmp_path):
    """LabelMe on Windows writes imagePath with backslashes."""
    write_image(str(tmp_path / "images" / "a.png"), 48, 32)
    write_labelme(tmp_path / "ann" / "a.json", [], image=None, image_path="..\\images\\a.png")
    ds = LabelMeDetection(str(tmp_path), ["ann"], ["cat"], transform=TRANSFORM, train=False)
    assert ds.image_path(0) == str(tmp_path / "images" / "a.png")
