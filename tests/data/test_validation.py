"""frcnn/data/validation.py: each bad-data case gives a clear error naming the file, the object and
the reason, also when a DataLoader worker meets it."""

import json
import logging
import os
import pickle

import pytest
import torch
from PIL import Image

from frcnn.data import build_dataset
from frcnn.data.coco import COCODetection
from frcnn.data.image_io import read_image
from frcnn.data.transforms import DetectionTransform
from frcnn.data.validation import DatasetError, Problem
from frcnn.data.voc import VOCDetection

TRANSFORM = DetectionTransform((64,), 128)
DOG = ("dog", 1, 1, 50, 40, 0, 0)


def _voc(root, **kwargs):
    return VOCDetection(str(root), ["train"], transform=TRANSFORM, train=True, **kwargs)


def test_missing_image_file(make_voc):
    root = make_voc({"a": (100, 80, [DOG])})
    os.remove(root / "JPEGImages" / "a.jpg")
    ds = _voc(root)  # annotations are fine: the dataset builds
    with pytest.raises(DatasetError, match=r"JPEGImages/a\.jpg: image file not found"):
        ds[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image(make_voc, damage):
    root = make_voc({"a": (100, 80, [DOG])})
    path = root / "JPEGImages" / "a.jpg"
    data = path.read_bytes()
    path.write_bytes(b"not a jpeg at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"JPEGImages/a\.jpg: cannot decode image"):
        _voc(root)[0]


def test_image_size_differs_from_annotation(make_voc):
    root = make_voc({"a": (100, 80, [DOG])})
    Image.new("RGB", (90, 80)).save(root / "JPEGImages" / "a.jpg")
    with pytest.raises(DatasetError, match=r"a\.jpg: decoded size 90x80 .* annotated size 100x80"):
        _voc(root)[0]


def test_malformed_xml(make_voc):
    root = make_voc({"a": (100, 80, [DOG]), "b": (100, 80, [DOG])})
    (root / "Annotations" / "b.xml").write_text("<annotation><size><width>100</wi")
    with pytest.raises(DatasetError, match=r"Annotations/b\.xml: malformed XML"):
        _voc(root)


def test_missing_annotation_files(make_voc, tmp_path):
    root = make_voc({"a": (100, 80, [DOG])})
    os.remove(root / "Annotations" / "a.xml")
    with pytest.raises(DatasetError, match=r"Annotations/a\.xml: annotation file not found"):
        _voc(root)
    with pytest.raises(DatasetError, match=r"ImageSets/Main/val\.txt: split file not found"):
        VOCDetection(str(root), ["val"], transform=TRANSFORM, train=True)
    with pytest.raises(DatasetError, match=r"nothing\.json: annotation file not found"):
        COCODetection(str(tmp_path / "nothing.json"), str(tmp_path), transform=TRANSFORM, train=True)


def test_unknown_class_name(make_voc):
    root = make_voc({"a": (100, 80, [DOG, ("unicorn", 5, 5, 20, 20, 0, 0)])})
    with pytest.raises(DatasetError, match=r"a\.xml: object 1 \('unicorn'\): unknown class name 'unicorn' .*=ignore"):
        _voc(root)


def test_unlisted_classes_ignore_leaves_their_objects_out_and_counts_them(make_voc, caplog):
    unicorn = ("unicorn", 5, 5, 20, 20, 0, 0)
    root = make_voc({"a": (100, 80, [DOG, unicorn, unicorn]), "b": (100, 80, [("bird", 2, 2, 9, 9, 0, 0)])})
    with caplog.at_level("INFO", logger="frcnn.data.validation"):
        ds = VOCDetection(str(root), ["train"], ["cat", "dog"], unlisted_classes="ignore", transform=TRANSFORM,
                          train=False, name="mine")  # fmt: skip
    assert [ds.get_annotation(i)["labels"].tolist() for i in range(2)] == [[2], []]  # b is kept, without objects
    assert "mine: ignoring 3 objects of classes not in dataset.classes: unicorn (2), bird (1)" in caplog.text


@pytest.mark.parametrize(
    "box, reason",
    [((30, 10, 20, 40), r"degenerate box \(x2 <= x1 or y2 <= y1\): \[29, 9, 20, 40\]"),
     ((10, 30, 40, 29), r"degenerate box"),  # ymax = ymin - 1: zero height (ymax = ymin is 1 px)
     ((50, 10, 120, 40), r"box extends outside the image: \[49, 9, 120, 40\] in image 100x80"),
     ((-5, 10, 20, 40), r"box extends outside the image")],
)  # fmt: skip
def test_invalid_box_errors_name_file_and_object(make_voc, box, reason):
    root = make_voc({"a": (100, 80, [DOG, ("cat", *box, 0, 0)])})
    with pytest.raises(DatasetError, match=r"Annotations/a\.xml: object 1 \('cat'\): " + reason):
        _voc(root)


def test_invalid_box_policies_clip_and_drop_with_one_summary_line(make_voc, caplog):
    objects = [DOG, ("cat", 50, 10, 120, 40, 0, 0), ("cat", 30, 10, 20, 40, 0, 0), ("cat", 101, 5, 130, 40, 0, 0)]
    root = make_voc({"a": (100, 80, objects)})
    with caplog.at_level(logging.WARNING, logger="frcnn.data.validation"):
        clipped = _voc(root, invalid_boxes="clip")
    # out-of-image box clipped; degenerate one and one entirely outside (empty after clipping) dropped
    assert clipped.get_annotation(0)["boxes"].tolist() == [[0, 0, 50, 40], [49, 9, 100, 40]]
    assert [r.message for r in caplog.records if "invalid" in r.message] == [
        "voc train: 3 of 4 boxes invalid (degenerate or outside the image); invalid_boxes=clip: 1 clipped, 2 dropped"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="frcnn.data.validation"):
        dropped = _voc(root, invalid_boxes="drop")
    assert dropped.get_annotation(0)["boxes"].tolist() == [[0, 0, 50, 40]]
    assert "0 clipped, 3 dropped" in caplog.text


def _coco(make_coco, data):
    path, images = make_coco(data)
    return COCODetection(path, images, transform=TRANSFORM, train=True)


COCO_OK = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
    "annotations": [{"id": 4, "image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 10], "iscrowd": 0}],
    "categories": [{"id": 2, "name": "dog"}],
}


@pytest.mark.parametrize(
    "text, reason",
    [("[1, 2, 3]", "top level is not an object"),
     ('{"images": [], "categories": []}', "no 'annotations' list"),
     ('{"info": "something else"}', "no 'images' list"),
     ("{not json", "not valid JSON")],
)  # fmt: skip
def test_json_that_is_not_coco(tmp_path, text, reason):
    path = tmp_path / "instances_x.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=rf"instances_x\.json: .*{reason}"):
        COCODetection(str(path), str(tmp_path), transform=TRANSFORM, train=True)


def test_coco_bad_annotations_name_the_annotation(make_coco):
    bad = json.loads(json.dumps(COCO_OK))
    bad["annotations"] += [
        {"id": 7, "image_id": 99, "category_id": 2, "bbox": [1, 2, 3, 4]},
        {"id": 8, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]},
    ]
    with pytest.raises(DatasetError, match=r"2 problems") as info:
        _coco(make_coco, bad)
    assert "annotation id 7: unknown image id 99" in str(info.value)
    assert "annotation id 8: unknown category id 5" in str(info.value)
    bad["annotations"] = [{"id": 9, "image_id": 1, "category_id": 2}]
    with pytest.raises(DatasetError, match=r"annotation id 9: missing or invalid 'bbox'"):
        _coco(make_coco, bad)
    bad = json.loads(json.dumps(COCO_OK))
    bad["annotations"][0]["bbox"] = [60, 2, 10, 10]
    with pytest.raises(DatasetError, match=r"annotation id 4: box extends outside the image"):
        _coco(make_coco, bad)


@pytest.mark.parametrize("mode, ext", [("L", "png"), ("CMYK", "jpg"), ("P", "png"), ("RGBA", "png"), ("LA", "png")])
def test_any_colour_mode_loads_as_rgb(tmp_path, mode, ext):
    path = tmp_path / f"image.{ext}"
    Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode).save(path)
    image = read_image(str(path))
    assert image.shape == (3, 10, 20) and image.dtype == torch.uint8
    if mode in ("L", "LA"):
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    else:
        assert (image[:, 5, 10].int() - torch.tensor([200, 100, 50])).abs().max() <= 6  # palette: web colours


def test_exif_orientation_is_respected(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # stored pixels: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    decoded = read_image(str(tmp_path / "rotated.jpg"))
    assert decoded.shape == (3, 40, 20)  # displayed: portrait
    assert decoded[0, 5, 10] > 200 and decoded[2, 35, 10] > 200  # red on top, blue at the bottom


def test_dataset_error_survives_pickling():
    error = DatasetError([Problem("a.jpg", None, "cannot decode image"), Problem("b.xml", "object 2", "bad box")])
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == error.problems and str(again) == str(error)


def test_dataset_error_rebuilt_from_a_worker_traceback():
    """torch re-raises a worker's exception as ``type(text of its formatted traceback)``."""
    original = DatasetError(Problem("/data/x.png", None, "cannot decode image (truncated)"))
    text = (
        "Caught DatasetError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "dataset.py", line 3, in __getitem__\n'
        f"frcnn.data.validation.DatasetError: {original}\n"
    )
    assert DatasetError(text).problems == [Problem("/data/x.png", None, "cannot decode image (truncated)")]


def test_a_bad_image_met_by_a_worker_is_named(tiny_shapes_cfg, tiny_shapes_root, tmp_path):
    """Workers are on by default; the message used to be one character per line, no file named."""
    import shutil

    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes_root, root)
    dataset = build_dataset(tiny_shapes_cfg(root=root), "train")
    broken = dataset.image_path(5)
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=list)
    with pytest.raises(DatasetError) as info:
        for _ in loader:
            pass
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.file == broken and problem.reason.startswith("cannot decode image")
    assert str(info.value) == f"invalid dataset: {broken}: {problem.reason}"
