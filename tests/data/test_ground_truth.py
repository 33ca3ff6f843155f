"""The scoring ground truth (``frcnn.data.ground_truth``): one flattening of a split's objects,
read by the VOC metric as arrays and by COCOeval as the index written from them."""

import numpy as np
import torch

from frcnn.data.ground_truth import coco_ground_truth, ground_truth_arrays


class TwoImages:
    """The DATA API's image_ids and get_annotation: an image with a plain, a difficult and a
    crowd object, and an image without objects."""

    image_ids = ["a", "b"]

    def get_annotation(self, index):
        count = 3 if index == 0 else 0
        return {
            "boxes": torch.tensor([[0.0, 0, 10, 20], [5, 5, 15, 10], [1, 2, 3, 4]])[:count],
            "labels": torch.tensor([1, 2, 2])[:count],
            "difficult": torch.tensor([False, True, False])[:count],
            "iscrowd": torch.tensor([False, False, True])[:count],
        }


def test_difficult_and_crowd_objects_are_ignored_by_voc_and_kept_apart_by_coco():
    gt = ground_truth_arrays(TwoImages())
    assert gt.image_index.tolist() == [0, 0, 0] and gt.labels.tolist() == [1, 2, 2]
    assert gt.ignore.tolist() == [False, True, True] and gt.iscrowd.tolist() == [False, False, True]
    images = [{"id": "a", "height": 30, "width": 40}, {"id": "b", "height": 30, "width": 40}]
    coco = coco_ground_truth(gt, images, category_ids=[7, 9], class_names=["cat", "dog"])
    annotations = coco.loadAnns(coco.getAnnIds())
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in annotations] == [
        ("a", 7, 0),
        ("a", 9, 0),
        ("a", 9, 1),
    ]
    assert annotations[1]["bbox"] == [5.0, 5.0, 10.0, 5.0] and annotations[1]["area"] == 50.0
    assert sorted(coco.getImgIds()) == ["a", "b"] and coco.loadCats([9])[0]["name"] == "dog"


def test_a_subset_of_images_keeps_their_objects_only():
    gt = ground_truth_arrays(TwoImages())
    kept = gt.select(np.array([True, False, True]))
    assert kept.labels.tolist() == [1, 2] and kept.iscrowd.tolist() == [False, True]
    assert kept.boxes.tolist() == [[0, 0, 10, 20], [1, 2, 3, 4]]
