"""COCO parsing: non-contiguous category ids, crowd boxes, an image without annotations."""

import os

import pytest
import torch

from frcnn.data.coco import COCODetection
from frcnn.data.transforms import DetectionTransform
from frcnn.data.validation import DatasetError

TRANSFORM = DetectionTransform((64,), 128)

DATA = {
    "images": [
        {"id": 10, "file_name": "a.jpg", "width": 80, "height": 60},
        {"id": 3, "file_name": "b.jpg", "width": 64, "height": 96},
        {"id": 7, "file_name": "empty.jpg", "width": 70, "height": 70},
    ],
    "annotations": [
        {"id": 5, "image_id": 3, "category_id": 90, "bbox": [1.5, 2.5, 10, 20], "iscrowd": 0, "area": 200},
        {"id": 1, "image_id": 10, "category_id": 18, "bbox": [10, 5, 20, 30], "iscrowd": 0, "area": 600},
        {"id": 2, "image_id": 10, "category_id": 1, "bbox": [0, 0, 40, 40], "iscrowd": 1, "area": 900},
    ],
    "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
}


def test_coco_ids_labels_and_boxes(make_coco):
    path, images = make_coco(DATA)
    ds = COCODetection(path, images, transform=TRANSFORM, train=False)
    assert ds.class_names == ["person", "dog", "toothbrush"]  # sorted by category id
    assert ds.category_ids == [1, 18, 90]
    assert ds.image_ids == [10, 3, 7]  # file order
    a = ds.get_annotation(0)
    assert a["image_id"] == 10 and (a["height"], a["width"]) == (60, 80)
    assert a["boxes"].tolist() == [[10.0, 5.0, 30.0, 35.0], [0.0, 0.0, 40.0, 40.0]]  # xywh -> xyxy
    assert a["labels"].tolist() == [2, 1]
    assert a["iscrowd"].tolist() == [False, True]
    b = ds.get_annotation(1)
    assert b["boxes"].tolist() == [[1.5, 2.5, 11.5, 22.5]] and b["labels"].tolist() == [3]
    assert ds.category_ids[int(b["labels"][0]) - 1] == 90  # label -> the file's category id
    assert ds.get_annotation(2)["boxes"].shape == (0, 4)  # images without annotations are kept


def test_coco_crowd_boxes_excluded_from_training_targets(make_coco):
    path, images = make_coco(DATA)
    train = COCODetection(path, images, transform=TRANSFORM, train=True)
    _, target = train[0]
    assert target["labels"].tolist() == [2] and not target["iscrowd"].any()
    _, empty = train[2]
    assert empty["boxes"].shape == (0, 4)
    test = COCODetection(path, images, transform=TRANSFORM, train=False)
    assert test[0][1]["iscrowd"].tolist() == [False, True]


def test_coco_class_list_selects_and_orders(make_coco):
    path, images = make_coco(DATA)
    ds = COCODetection(path, images, ["toothbrush", "dog", "person"], transform=TRANSFORM, train=False)
    assert ds.category_ids == [90, 18, 1]
    assert ds.get_annotation(0)["labels"].tolist() == [2, 3]
    with pytest.raises(DatasetError, match=r"annotation id 2: unknown class name 'person'"):
        COCODetection(path, images, ["toothbrush", "dog"], transform=TRANSFORM, train=False)
    with pytest.raises(DatasetError, match=r"classes \['cat'\] have no category"):
        COCODetection(path, images, ["dog", "cat"], transform=TRANSFORM, train=False)
    subset = COCODetection(path, images, ["toothbrush", "dog"], unlisted_classes="ignore", transform=TRANSFORM,
                           train=False)  # fmt: skip
    assert subset.category_ids == [90, 18] and subset.get_annotation(0)["labels"].tolist() == [2]
    assert [c["id"] for c in subset.coco_gt().dataset["categories"]] == [90, 18]


def test_coco_gt_is_the_file(make_coco):
    path, images = make_coco(DATA)
    gt = COCODetection(path, images, transform=TRANSFORM, train=False).coco_gt()
    assert sorted(gt.getImgIds()) == [3, 7, 10]
    assert sorted(gt.getCatIds()) == [1, 18, 90]
    assert gt.loadAnns([5])[0]["bbox"] == [1.5, 2.5, 10, 20]


def test_large_files_index_is_cached_until_the_file_changes(make_coco, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("frcnn.data.index_cache.MIN_CACHED_BYTES", 0)
    path, images = make_coco(DATA)
    first = COCODetection(path, images, transform=TRANSFORM, train=False)
    assert len(list((tmp_path / "cache" / "frcnn" / "coco_index").glob("*.npz"))) == 1

    def fail(*args):
        raise AssertionError("parsed again")

    monkeypatch.setattr("frcnn.data.coco.parse_coco", fail)
    cached = COCODetection(path, images, transform=TRANSFORM, train=False)
    assert cached.image_ids == first.image_ids and cached.category_ids == first.category_ids
    assert cached.class_names == first.class_names and cached.image_path(1) == first.image_path(1)
    for i in range(3):
        a, b = first.get_annotation(i), cached.get_annotation(i)
        assert all(torch.equal(a[k], b[k]) for k in ("boxes", "labels", "iscrowd"))
    with pytest.raises(AssertionError, match="parsed again"):  # another class list: another entry
        COCODetection(path, images, ["dog"], transform=TRANSFORM, train=False)
    os.utime(path, ns=(1, 1))  # the file changed
    with pytest.raises(AssertionError, match="parsed again"):
        COCODetection(path, images, transform=TRANSFORM, train=False)


def test_a_bbox_number_written_as_a_string_is_named(make_coco):
    """numpy would read "12.5" as a number (the check passed) while COCO scoring crashed on it."""
    data = {**DATA, "annotations": [*DATA["annotations"][:2], {**DATA["annotations"][2], "bbox": ["12.5", 0, 4, 4]}]}
    path, images = make_coco(data)
    with pytest.raises(DatasetError, match=r"annotation id 2: missing or invalid 'bbox': \['12.5', 0, 4, 4\]"):
        COCODetection(path, images, transform=TRANSFORM, train=False)


def test_coco_ground_truth_is_the_cleaned_index(make_coco):
    """Under invalid_boxes=clip the COCO scoring sees what the index holds (and so the VOC metrics):
    a box reaching outside the image clipped, a negative-width one dropped, the rest as in the file."""
    outside = {"id": 8, "image_id": 3, "category_id": 1, "bbox": [50, 80, 30, 30], "iscrowd": 0, "area": 900}
    negative = {"id": 9, "image_id": 7, "category_id": 1, "bbox": [10, 10, -5, 5], "iscrowd": 0, "area": 25}
    path, images = make_coco({**DATA, "annotations": [*DATA["annotations"], outside, negative]})
    ds = COCODetection(path, images, transform=TRANSFORM, train=False, invalid_boxes="clip")
    gt = ds.coco_gt()
    assert sorted(gt.anns) == sorted(int(i) for i in ds.index.object_ids) == [1, 2, 5, 8]
    assert gt.anns[8]["bbox"] == [50.0, 80.0, 14.0, 16.0]  # clipped to the 64x96 image
    assert gt.anns[8]["area"] == 900  # the file's own fields otherwise
    assert gt.anns[5]["bbox"] == [1.5, 2.5, 10, 20]  # untouched: the file's numbers as they are
