"""VOC parsing against hand-checked XML written by the test."""

import pytest
import torch

from frcnn.data.config import VOC_CLASSES
from frcnn.data.transforms import DetectionTransform
from frcnn.data.voc import VOCDetection

TRANSFORM = DetectionTransform((64,), 128)


def test_voc_xml_boxes_labels_and_flags(make_voc):
    root = make_voc({
        # dog touching the top-left corner (1-based pixel 1 -> 0.0), difficult truncated person
        "2008_000001": (100, 80, [("dog", 1, 1, 50, 40, 0, 0), ("person", 48, 20, 100, 80, 1, 1)]),
        "2008_000002": (64, 48, []),
    })  # fmt: skip
    ds = VOCDetection(str(root), ["train"], transform=TRANSFORM, train=False)

    assert ds.image_ids == ["2008_000001", "2008_000002"]
    assert ds.class_names == list(VOC_CLASSES)
    assert ds.category_ids == list(range(1, 21))
    ann = ds.get_annotation(0)
    assert ann["image_id"] == "2008_000001" and (ann["height"], ann["width"]) == (80, 100)
    assert ann["boxes"].tolist() == [[0.0, 0.0, 50.0, 40.0], [47.0, 19.0, 100.0, 80.0]]
    assert ann["boxes"].dtype == torch.float32
    assert ann["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    assert ann["difficult"].tolist() == [False, True]
    assert ann["iscrowd"].tolist() == [False, False]
    empty = ds.get_annotation(1)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert ds.aspect_ratios.tolist() == pytest.approx([100 / 80, 64 / 48])


@pytest.mark.parametrize("use_difficult, expected", [(True, 2), (False, 1)])
def test_voc_training_targets_keep_difficult_by_choice(make_voc, use_difficult, expected):
    root = make_voc({"a": (100, 80, [("dog", 1, 1, 50, 40, 0, 0), ("cat", 10, 10, 60, 60, 1, 0)])})
    train = VOCDetection(str(root), ["train"], transform=TRANSFORM, train=True, use_difficult=use_difficult)
    _, target = train[0]
    assert len(target["boxes"]) == expected
    assert target["difficult"].tolist() == [False, True][:expected]
    test = VOCDetection(str(root), ["train"], transform=TRANSFORM, train=False, use_difficult=use_difficult)
    assert len(test[0][1]["boxes"]) == 2  # evaluation keeps every object, flagged


def test_voc_year_sets_concatenate_and_custom_classes(make_voc):
    make_voc({"000005": (64, 64, [("ring", 2, 3, 20, 30, 0, 0)])}, split="trainval", folder="VOC2007")
    root = make_voc({"2012_000001": (80, 64, [("disc", 5, 5, 10, 10, 0, 0)])}, split="trainval", folder="VOC2012")
    ds = VOCDetection(str(root), ["2007-trainval", "2012-trainval"], ["disc", "ring"], transform=TRANSFORM, train=False)
    assert ds.image_ids == ["000005", "2012_000001"]
    assert ds.image_path(0).endswith("VOC2007/JPEGImages/000005.jpg")
    assert ds.image_path(1).endswith("VOC2012/JPEGImages/2012_000001.jpg")
    assert ds.get_annotation(0)["labels"].tolist() == [2]
    assert ds.get_annotation(1)["boxes"].tolist() == [[4.0, 4.0, 10.0, 10.0]]


def test_voc_coco_gt_conversion(make_voc):
    root = make_voc({"a": (100, 80, [("dog", 1, 1, 50, 40, 0, 0), ("cat", 11, 21, 60, 60, 1, 0)]), "b": (50, 50, [])})
    ds = VOCDetection(str(root), ["train"], transform=TRANSFORM, train=False)
    gt = ds.coco_gt()
    assert sorted(gt.getImgIds()) == ["a", "b"]
    anns = gt.loadAnns(gt.getAnnIds(imgIds=["a"]))
    assert [a["bbox"] for a in anns] == [[0.0, 0.0, 50.0, 40.0], [10.0, 20.0, 50.0, 40.0]]
    assert [a["category_id"] for a in anns] == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("cat") + 1]
    assert [(a["iscrowd"], a["ignore"]) for a in anns] == [(0, 0), (0, 1)]
    assert ds.coco_gt() is gt  # built once
