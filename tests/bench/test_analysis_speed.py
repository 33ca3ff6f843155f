"""Section analysis (``frcnn.bench.analysis_speed``): the synthetic COCO-sized result set and the
timing's report (tiny sizes)."""

import numpy as np

from frcnn.bench.analysis_speed import benchmark_analysis, synthetic_coco_split


def test_synthetic_coco_split_shapes():
    gts, dets = synthetic_coco_split(num_images=40, objects_per_image=7.3, dets_per_image=30, num_classes=5)
    assert len(dets.labels) == 40 * 30 and set(np.unique(dets.image_index)) == set(range(40))
    assert 3 < len(gts.labels) / 40 < 12
    assert np.all(gts.boxes[:, 2:] > gts.boxes[:, :2]) and np.all(dets.boxes[:, 2:] > dets.boxes[:, :2])
    assert gts.labels.min() >= 1 and dets.labels.max() <= 5
    assert np.array_equal(gts.ignore, gts.iscrowd)


def test_benchmark_analysis_reports_both_times():
    result = benchmark_analysis(num_images=30, objects_per_image=4, dets_per_image=20, num_classes=4)
    assert result["scoring_seconds"] > 0 and result["analysis_seconds"] > 0
    assert result["analysis_ratio"] == result["analysis_seconds"] / result["scoring_seconds"]
    assert result["num_detections"] == 600 and 0 < result["coco_AP"] < 1
    assert set(result["tide"]) == {"ap", "cls", "loc", "both", "dupe", "bkg", "miss", "fp", "fn"}
