"""The analysis pieces on hand-built cases with known answers: the confusion matrix, the F1
thresholds, COCO's per-class APs, the TIDE mean over IoUs, the worst images and analysis.json."""

import numpy as np
import pytest

from frcnn.data.ground_truth import GroundTruth, coco_from_dict
from frcnn.evaluation import score_predictions
from frcnn.evaluation.analysis import analyze, format_analysis_table, metrics_summary, objects_by_size
from frcnn.evaluation.coco_eval import COCO_BACKENDS, class_aps
from frcnn.evaluation.confusion import confusion_matrix, normalized_rows
from frcnn.evaluation.results_io import predictions_from_detections
from frcnn.evaluation.thresholds import best_f1, curve_at, f1_curves
from frcnn.evaluation.tide import COCO_IOUS, MAIN_ERRORS, tide_breakdowns, tide_errors
from frcnn.evaluation.voc_eval import ClassPR, Detections
from tests.evaluation.test_tide import random_split

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 0.0, 30.0, 10.0]
CROWD = [50.0, 50.0, 90.0, 90.0]


def split(gt_rows, det_rows):
    """gt_rows: (image, label, box, ignore); det_rows: (image, label, score, box)."""
    image, label, box, ignore = zip(*gt_rows)
    gts = GroundTruth(np.array(image), np.array(label), np.array(box, float), np.array(ignore, bool))
    image, label, score, box = zip(*det_rows)
    return Detections(np.array(image), np.array(label), np.array(score, float), np.array(box, float)), gts


def test_confusion_matrix_counts():
    dets, gts = split(
        [(0, 1, A, False), (0, 2, B, False), (0, 1, CROWD, True), (1, 2, A, False)],
        [
            (0, 1, 0.9, A),  # found: circle -> circle
            (0, 1, 0.8, B),  # the class-2 object found as class 1
            (0, 2, 0.7, [55.0, 55.0, 65.0, 65.0]),  # inside the ignore region: left out
            (0, 1, 0.7, [60.0, 60.0, 70.0, 70.0]),  # inside the ignore region: left out
            (1, 1, 0.6, [70.0, 70.0, 80.0, 80.0]),  # on the background
            (1, 2, 0.1, A),  # below the score threshold: the object is missed
        ],
    )
    counts = confusion_matrix(dets, gts, num_classes=2, iou_threshold=0.5, score_threshold=0.5)
    np.testing.assert_array_equal(counts, [[1, 0, 0], [1, 0, 1], [1, 0, 0]])
    # at score 0.05 the last detection finds its object
    counts = confusion_matrix(dets, gts, num_classes=2, iou_threshold=0.5, score_threshold=0.05)
    np.testing.assert_array_equal(counts, [[1, 0, 0], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(normalized_rows(counts), [[1, 0, 0], [0.5, 0.5, 0], [1, 0, 0]])


def test_confusion_matrix_iou_threshold_and_duplicates():
    shifted = [3.0, 0.0, 13.0, 10.0]  # IoU 7/13 = 0.54 with A
    dets, gts = split([(0, 1, A, False)], [(0, 1, 0.9, A), (0, 1, 0.8, A), (0, 2, 0.7, shifted)])
    # the first detection takes the object, the other two are false positives on the background
    np.testing.assert_array_equal(confusion_matrix(dets, gts, 2, 0.5, 0.5), [[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    dets, gts = split([(0, 1, A, False)], [(0, 2, 0.9, shifted)])
    np.testing.assert_array_equal(confusion_matrix(dets, gts, 2, 0.5, 0.5), [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(confusion_matrix(dets, gts, 2, 0.6, 0.5), [[0, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_confusion_matrix_rows_count_every_object():
    dets, gts = random_split(3, num_images=20)
    counts = confusion_matrix(dets, gts, 3, 0.5, 0.3)
    objects = np.bincount(gts.labels[~gts.ignore], minlength=4)[1:]
    np.testing.assert_array_equal(counts[:3].sum(axis=1), objects)
    assert counts[3, 3] == 0


def test_best_f1_cuts_after_runs_of_equal_scores():
    # ranked: TP 0.9, FP 0.8, TP 0.8, FP 0.5; 3 positives
    curve = ClassPR(np.array([0.9, 0.8, 0.8, 0.5]), np.array([True, False, True, False]), 3)
    # cuts: 0.9 (P 1, R 1/3, F1 .5), 0.8 (P 2/3, R 2/3, F1 2/3), 0.5 (P 1/2, R 2/3, F1 .571)
    assert best_f1(curve) == pytest.approx({"threshold": 0.8, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert best_f1(ClassPR(np.zeros(0), np.zeros(0, bool), 0)) is None
    empty = best_f1(ClassPR(np.zeros(0), np.zeros(0, bool), 2))
    assert empty == {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_f1_curves_and_the_suggested_threshold():
    one = ClassPR(np.array([0.9, 0.6, 0.3]), np.array([True, True, False]), 2)
    two = ClassPR(np.array([0.7, 0.2]), np.array([True, True]), 4)
    precision, recall, f1 = curve_at(one, np.array([1.0, 0.9, 0.5, 0.0]))
    np.testing.assert_allclose(precision, [1.0, 1.0, 1.0, 2 / 3])
    np.testing.assert_allclose(recall, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(f1, [0.0, 2 / 3, 1.0, 0.8])
    curves = f1_curves([one, two, ClassPR(np.zeros(0), np.zeros(0, bool), 0)])
    # class one: F1 0.8 up to 0.3, 1 in (0.3, 0.6], 2/3 in (0.6, 0.9]; class two: 2/3 up to 0.2
    # (P 1, R 1/2), 0.4 in (0.2, 0.7]: the mean peaks at 0.2, (0.8 + 2/3) / 2, above 0.7 in (0.3, 0.6]
    mean = curves["mean"]
    assert curves["per_class"].shape == (3, 101)
    best = curves["suggested"]
    assert best["threshold"] == pytest.approx(0.2) and best["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert best["precision"] == pytest.approx((2 / 3 + 1) / 2) and best["recall"] == pytest.approx((1 + 0.5) / 2)
    assert mean[np.isclose(curves["thresholds"], 0.5)] == pytest.approx(0.7)
    assert mean.max() == pytest.approx(best["f1"])
    assert f1_curves([ClassPR(np.zeros(0), np.zeros(0, bool), 0)])["suggested"] is None


def test_class_aps_of_a_precision_array():
    precision = -np.ones((2, 3, 2, 4, 3))  # T, R, K, A, M
    precision[:, :, 0, 0, -1] = [[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]]
    precision[:, :, 0, 1, 0] = 1.0  # another max-detections setting: not read
    aps = class_aps(precision)
    assert aps[0, 0] == pytest.approx(0.5) and aps[0, 1] == -1 and aps[1, 0] == -1


@pytest.mark.parametrize("coco_backend", COCO_BACKENDS)
def test_coco_per_class_mean_is_the_summary(fake_dataset, coco_backend):
    rng = np.random.default_rng(0)
    gts = fake_dataset.ground_truth()
    boxes = gts.boxes + rng.normal(0, 2, gts.boxes.shape)
    dets = Detections(gts.image_index, gts.labels, rng.random(len(boxes)), boxes)
    predictions = predictions_from_detections(dets, fake_dataset.image_ids, fake_dataset.category_ids)
    metrics, _ = score_predictions(fake_dataset, predictions, coco_backend=coco_backend)
    aps = [entry["AP"] for entry in metrics["coco_per_class"].values() if entry["AP"] >= 0]
    assert np.mean(aps) == pytest.approx(metrics["coco"]["AP"], abs=1e-12)
    for size, key in (("APs", "APs"), ("APm", "APm"), ("APl", "APl")):
        defined = [entry[size] for entry in metrics["coco_per_class"].values() if entry[size] >= 0]
        expected = metrics["coco"][key]
        assert (np.mean(defined) if defined else -1.0) == pytest.approx(expected, abs=1e-12)


def test_tide_at_several_ious_equals_each_alone():
    dets, gts = random_split(5)
    results = tide_breakdowns(dets, gts, 3, COCO_IOUS)
    for t, (result, _) in zip(COCO_IOUS, results):
        alone = tide_errors(dets, gts, 3, fg_iou=t)
        assert result["ap"] == alone["ap"]
        assert all(result["main"][name] == alone["main"][name] for name in MAIN_ERRORS)


def test_objects_by_size_uses_cocoeval_bounds():
    areas = [(7, 10.0, 0), (7, 32.0**2, 0), (7, 50.0**2, 0), (7, 96.0**2, 0), (9, 1e5, 0), (9, 10.0, 1), (8, 5.0, 0)]
    annotations = [
        {"id": k, "image_id": 1, "category_id": c, "bbox": [0, 0, 1, 1], "area": a, "iscrowd": crowd}
        for k, (c, a, crowd) in enumerate(areas, start=1)
    ]
    coco = coco_from_dict({"images": [{"id": 1}], "annotations": annotations, "categories": [{"id": 7}, {"id": 9}]})
    counts = objects_by_size(coco, ["a", "b"], [7, 9])
    # COCOeval's ranges include both ends: 32^2 is small and medium, 96^2 medium and large; crowds
    # and categories outside the class list are not counted
    assert counts == {"a": {"small": 2, "medium": 3, "large": 1}, "b": {"small": 0, "medium": 0, "large": 1}}


def noisy_predictions(dataset, seed=0):
    """The dataset's objects, jittered, some relabelled, plus stray boxes: every error type."""
    rng = np.random.default_rng(seed)
    gts = dataset.ground_truth()
    boxes = gts.boxes + rng.normal(0, 3, gts.boxes.shape)
    labels = gts.labels.copy()
    flip = rng.random(len(labels)) < 0.2
    labels[flip] = labels[flip] % len(dataset.class_names) + 1
    stray = np.concatenate([rng.uniform(0, 40, (10, 2)), rng.uniform(60, 90, (10, 2))], axis=1)
    dets = Detections(
        np.concatenate([gts.image_index, rng.integers(0, len(dataset.image_ids), 10)]),
        np.concatenate([labels, rng.integers(1, len(dataset.class_names) + 1, 10)]),
        rng.random(len(labels) + 10),
        np.concatenate([boxes, stray]),
    )
    return predictions_from_detections(dets, dataset.image_ids, dataset.category_ids, dataset.class_names)


def test_analysis_json(fake_dataset):
    predictions = noisy_predictions(fake_dataset)
    metrics, curves = score_predictions(fake_dataset, predictions)
    analysis, worst = analyze(fake_dataset, predictions, metrics, curves, num_worst=3)
    names = fake_dataset.class_names

    assert set(analysis["tide"]) == {"ap", "cls", "loc", "both", "dupe", "bkg", "miss", "fp", "fn"}
    assert set(analysis["tide_coco"]) == set(analysis["tide"])
    assert analysis["tide_coco"]["ap"] < analysis["tide"]["ap"]
    confusion = analysis["confusion_matrix"]
    assert confusion["classes"] == [*names, "background"]
    counts = np.asarray(confusion["counts"])
    assert counts.shape == (len(names) + 1,) * 2
    assert confusion["score_threshold"] == analysis["suggested_score_threshold"]["threshold"]
    assert list(analysis["per_class"]) == names
    for name, entry in analysis["per_class"].items():
        assert entry["ap"]["voc07"] == metrics["voc07"]["AP"][name]
        assert entry["ap"]["coco"] == metrics["coco_per_class"][name]["AP"]
        assert entry["num_objects"] == counts[names.index(name)].sum()
    assert 1 <= len(worst) <= 3 and analysis["worst_images"][0]["file"] == "worst_01.png"
    weights = [entry["weight"] for entry in analysis["worst_images"]]
    assert weights == sorted(weights, reverse=True)
    for entry, image in zip(analysis["worst_images"], worst):
        assert entry["weight"] == sum(entry["errors"].values()) == image.weight
        assert len(image.kinds) == len(image.boxes) and image.gt_missed.sum() == entry["errors"]["miss"]
    assert set(metrics_summary(analysis)) == {"tide", "tide_coco", "suggested_score_threshold"}
    table = format_analysis_table(analysis)
    assert "IoU 0.5:0.95" in table and "suggested score threshold" in table


def test_worst_images_count_errors_at_the_threshold(fake_dataset):
    gts = fake_dataset.ground_truth()
    keep = gts.image_index <= 1
    # image 0: every object found; image 1: every object found plus a confident and a faint stray box
    dets = Detections(
        np.concatenate([gts.image_index[keep], [1, 1]]),
        np.concatenate([gts.labels[keep], [1, 1]]),
        np.concatenate([np.full(keep.sum(), 0.9), [0.8, 0.1]]),
        np.concatenate([gts.boxes[keep], [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]]]),
    )
    predictions = predictions_from_detections(dets, fake_dataset.image_ids, fake_dataset.category_ids)
    metrics, curves = score_predictions(fake_dataset, predictions)
    analysis, worst = analyze(fake_dataset, predictions, metrics, curves, score_threshold=0.5, num_worst=50)
    by_image = {entry["image_id"]: entry for entry in analysis["worst_images"]}
    assert fake_dataset.image_ids[0] not in by_image
    assert by_image[fake_dataset.image_ids[1]]["errors"]["bkg"] == 1  # the 0.1 box is below the threshold
    others = [i for i in range(2, len(fake_dataset.image_ids)) if (~gts.ignore[gts.image_index == i]).any()]
    for i in others:  # no detection: each non-ignored object missed
        objects = int((~gts.ignore[gts.image_index == i]).sum())
        assert by_image[fake_dataset.image_ids[i]]["errors"]["miss"] == objects
