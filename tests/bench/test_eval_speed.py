"""Section eval (``frcnn.bench.eval_speed``): the synthetic result set and both metrics' report (tiny sizes)."""

import numpy as np

from frcnn.bench.eval_speed import benchmark_eval, synthetic_coco_ground_truth, synthetic_split


def test_the_synthetic_split_is_voc07_test_like_and_seeded():
    gts, dets = synthetic_split(num_images=30, dets_per_image=10, num_classes=5, seed=1)
    assert len(dets.scores) == 300 and 30 <= len(gts.labels) <= 30 * 6
    assert set(np.unique(gts.image_index)) == set(range(30))  # every image has an object
    for split in (gts, dets):
        assert split.labels.min() >= 1 and split.labels.max() <= 5
        assert split.boxes.shape[1] == 4
    assert (gts.boxes[:, 2:] > gts.boxes[:, :2]).all()
    again, _ = synthetic_split(num_images=30, dets_per_image=10, num_classes=5, seed=1)
    np.testing.assert_array_equal(again.boxes, gts.boxes)


def test_the_coco_ground_truth_holds_every_object_as_xywh():
    gts, _ = synthetic_split(num_images=4, dets_per_image=1, num_classes=3)
    coco = synthetic_coco_ground_truth(gts, 4, ["a", "b", "c"])
    assert sorted(coco.getImgIds()) == [0, 1, 2, 3] and sorted(coco.getCatIds()) == [1, 2, 3]
    first = coco.loadAnns(coco.getAnnIds())[0]
    x1, y1, x2, y2 = gts.boxes[0]
    assert first["bbox"] == [x1, y1, x2 - x1, y2 - y1] and first["image_id"] == gts.image_index[0]


def test_benchmark_eval_reports_times():
    result = benchmark_eval(num_images=50, dets_per_image=20, num_classes=5)
    assert result["num_detections"] == 1000
    assert result["voc_seconds"] > 0 and set(result["coco_seconds"]) == {"faster_coco_eval", "pycocotools"}
    assert result["coco_speedup"] == result["coco_seconds"]["pycocotools"] / result["coco_seconds"]["faster_coco_eval"]
    assert result["coco_max_abs_difference"] <= 1e-12
    assert 0.0 < result["voc_mAP"] < 1.0 and 0.0 < result["coco_AP"] < 1.0
