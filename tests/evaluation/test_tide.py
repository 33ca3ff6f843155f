"""TIDE error breakdown: one hand-built case per error type, and equality with tidecv's recorded numbers."""

import json
from pathlib import Path

import numpy as np
import pytest

from frcnn.data.ground_truth import GroundTruth
from frcnn.evaluation.tide import MAIN_ERRORS, tide_ap, tide_errors
from frcnn.evaluation.voc_eval import ClassPR, Detections

TIDECV_REFERENCE = Path(__file__).with_name("tidecv_reference.json")

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 0.0, 30.0, 10.0]
EMPTY = [50.0, 50.0, 60.0, 60.0]


def make_gts(rows):
    """rows: (image, label, box[, ignore])."""
    rows = [row if len(row) == 4 else (*row, False) for row in rows]
    image, label, box, ignore = zip(*rows)
    return GroundTruth(np.array(image), np.array(label), np.array(box, dtype=float), np.array(ignore, dtype=bool))


def make_dets(rows):
    """rows: (image, label, score, box)."""
    if not rows:
        return Detections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))
    image, label, score, box = zip(*rows)
    return Detections(np.array(image), np.array(label), np.array(score, dtype=float), np.array(box, dtype=float))


def check(result, ap, **expected):
    """Base AP and the listed dAPs exact (to float rounding); every other dAP 0."""
    assert result["ap"] == pytest.approx(ap, abs=1e-12)
    for name in MAIN_ERRORS:
        assert result["main"][name] == pytest.approx(expected.get(name, 0.0), abs=1e-12), name
    for name in ("fp", "fn"):
        assert result["special"][name] == pytest.approx(expected.get(name, 0.0), abs=1e-12), name


def test_tide_ap_101_points():
    # One TP of two positives: precision 1 at recall 0, 0.01, ..., 0.5 (51 of 101 points).
    curve = ClassPR(scores=np.array([0.9]), tp=np.array([True]), num_positives=2)
    assert tide_ap(curve) == pytest.approx(51 / 101)
    curve = ClassPR(scores=np.array([0.9, 0.8]), tp=np.array([False, True]), num_positives=1)
    assert tide_ap(curve) == pytest.approx(0.5)
    assert tide_ap(ClassPR(scores=np.zeros(0), tp=np.zeros(0, bool), num_positives=3)) == 0.0


def test_perfect():
    gts = make_gts([(0, 1, A), (0, 2, B), (1, 1, B)])
    dets = make_dets([(0, 1, 0.9, A), (0, 2, 0.8, B), (1, 1, 0.7, B)])
    result = tide_errors(dets, gts, num_classes=2)
    check(result, 1.0)
    np.testing.assert_allclose(result["per_class"]["ap"], [1.0, 1.0])


def test_classification_error():
    # A is found; a class-2 detection sits exactly on B (class 1): class 1 has AP 51/101.
    gts = make_gts([(0, 1, A), (0, 1, B)])
    dets = make_dets([(0, 1, 0.9, A), (0, 2, 0.8, B)])
    result = tide_errors(dets, gts, num_classes=2)
    check(result, 51 / 101, cls=50 / 101, fn=50 / 101)
    # Class 2 has no ground truth: no AP, out of the mean.
    assert np.isnan(result["per_class"]["ap"][1])
    assert result["per_class"]["main"]["cls"][0] == pytest.approx(50 / 101)


def test_localisation_error():
    # Right class, IoU 0.3 with B, ranked below the true positive on A.
    gts = make_gts([(0, 1, A), (0, 1, B)])
    dets = make_dets([(0, 1, 0.9, A), (0, 1, 0.8, [20.0, 0.0, 23.0, 10.0])])
    check(tide_errors(dets, gts, num_classes=1), 51 / 101, loc=50 / 101, fn=50 / 101)


def test_only_the_best_error_of_an_object_is_fixed():
    # Two localisation errors on one object: fixing turns the higher-scoring one into the TP and
    # removes the other (were both kept, the 0.4-IoU one would be a false positive after it).
    gts = make_gts([(0, 1, A)])
    dets = make_dets([(0, 1, 0.8, [0.0, 0.0, 4.0, 10.0]), (0, 1, 0.9, [0.0, 0.0, 3.0, 10.0])])
    check(tide_errors(dets, gts, num_classes=1), 0.0, loc=1.0)


def test_both_error():
    # A class-2 detection at IoU 0.3 with A (class 1) ranks above class 2's true positive.
    gts = make_gts([(0, 1, A), (1, 2, B)])
    dets = make_dets([(0, 1, 0.8, A), (0, 2, 0.9, [0.0, 0.0, 3.0, 10.0]), (1, 2, 0.5, B)])
    check(tide_errors(dets, gts, num_classes=2), 0.75, both=0.25, fp=0.25)


def test_duplicate_error():
    # TP on A (0.9), its duplicate (0.8), TP on B (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # AP = (51 * 1 + 50 * 2/3) / 101 = 253 / 303; fixed: 1.
    gts = make_gts([(0, 1, A), (0, 1, B)])
    dets = make_dets([(0, 1, 0.9, A), (0, 1, 0.8, A), (0, 1, 0.7, B)])
    check(tide_errors(dets, gts, num_classes=1), 253 / 303, dupe=50 / 303, fp=50 / 303)


def test_background_error():
    # Two background detections above the true positive, one in an image without any object:
    # precision 1/3 at recall 1.
    gts = make_gts([(0, 1, A)])
    dets = make_dets([(0, 1, 0.9, EMPTY), (1, 1, 0.95, A), (0, 1, 0.8, A)])
    check(tide_errors(dets, gts, num_classes=1), 1 / 3, bkg=2 / 3, fp=2 / 3)


def test_missed_error():
    # B is in an image without detections: recall 1/2.
    gts = make_gts([(0, 1, A), (1, 1, B)])
    dets = make_dets([(0, 1, 0.9, A)])
    check(tide_errors(dets, gts, num_classes=1), 51 / 101, miss=50 / 101, fn=50 / 101)


def test_missed_class_leaves_the_mean():
    # Class 2's only object is missed: AP 0 -> fixed, the class has neither objects nor detections
    # and leaves the mean (tidecv's rule), so the mAP goes from 1/2 to 1.
    gts = make_gts([(0, 1, A), (1, 2, B)])
    dets = make_dets([(0, 1, 0.9, A)])
    check(tide_errors(dets, gts, num_classes=2), 0.5, miss=0.5, fn=0.5)


def test_ignored_objects():
    # A detection on a difficult object counts neither way; the difficult object is no positive.
    gts = make_gts([(0, 1, A), (0, 1, B, True)])
    dets = make_dets([(0, 1, 0.95, B), (0, 1, 0.9, A)])
    check(tide_errors(dets, gts, num_classes=1), 1.0)


def test_no_detections():
    # Fixing the miss leaves no class to average (tidecv divides by zero there): the mAP stays 0.
    gts = make_gts([(0, 1, A)])
    check(tide_errors(make_dets([]), gts, num_classes=1), 0.0)
    gts = make_gts([(0, 1, A), (0, 2, B)])
    dets = make_dets([(0, 2, 0.9, B)])
    check(tide_errors(dets, gts, num_classes=2), 0.5, miss=0.5, fn=0.5)


def random_split(seed, num_images=6, num_classes=3):
    """Objects (10% ignored) with noisy detections, some of another class, and stray boxes."""
    rng = np.random.default_rng(seed)
    gt_rows, det_rows = [], []
    for image in range(num_images):
        for _ in range(rng.integers(1, 5)):
            corner = rng.uniform(0, 80, 2)
            box = np.concatenate([corner, corner + rng.uniform(10, 40, 2)])
            label = int(rng.integers(1, num_classes + 1))
            gt_rows.append((image, label, box.tolist(), bool(rng.random() < 0.1)))
            for _ in range(rng.integers(0, 3)):
                noisy = box + rng.normal(0, 6, 4)
                noisy[2:] = np.maximum(noisy[2:], noisy[:2] + 2)
                det_label = label if rng.random() < 0.7 else int(rng.integers(1, num_classes + 1))
                det_rows.append((image, det_label, float(rng.random()), noisy.tolist()))
        for _ in range(rng.integers(0, 3)):
            corner = rng.uniform(0, 80, 2)
            box = np.concatenate([corner, corner + rng.uniform(10, 40, 2)])
            det_rows.append((image, int(rng.integers(1, num_classes + 1)), float(rng.random()), box.tolist()))
    return make_dets(det_rows), make_gts(gt_rows)


def tidecv_errors(dets, gts):
    """The same split through tidecv: (AP, main dAPs, special dAPs), as fractions."""
    import tidecv

    def xywh(box):
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    gt_data, pred_data = tidecv.Data("gt"), tidecv.Data("pred")
    for image, label, box, ignore in zip(gts.image_index, gts.labels, gts.boxes, gts.ignore):
        add = gt_data.add_ignore_region if ignore else gt_data.add_ground_truth
        add(int(image), int(label), xywh(box))
    for image, label, score, box in zip(dets.image_index, dets.labels, dets.scores, dets.boxes):
        pred_data.add_detection(int(image), int(label), float(score), xywh(box))
    tide = tidecv.TIDE()
    tide.evaluate(gt_data, pred_data, mode=tidecv.TIDE.BOX, name="run")
    names = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupe", "Bkg": "bkg", "Miss": "miss"}
    main = {names[key]: value / 100 for key, value in tide.get_main_errors()["run"].items()}
    special = tide.get_special_errors()["run"]
    return tide.runs["run"].ap / 100, main, {"fp": special["FalsePos"] / 100, "fn": special["FalseNeg"] / 100}


def compared_seeds() -> list[int]:
    """The seeds of random_split whose every class has objects (tidecv averages in classes with
    detections but no objects, as AP 0: those sets are left out)."""
    seeds = []
    for seed in range(40):
        gts = random_split(seed)[1]
        if len(np.unique(gts.labels[~gts.ignore])) == 3:
            seeds.append(seed)
    return seeds


def test_matches_tidecv():
    """Equal to tidecv 1.0.1's numbers on the same splits, as recorded in TIDECV_REFERENCE (tidecv needs
    opencv, pandas and seaborn, which frcnn does not install; record them again with
    ``pip install --target /tmp/tide tidecv && PYTHONPATH=/tmp/tide python -m tests.evaluation.test_tide``)."""
    reference = json.loads(TIDECV_REFERENCE.read_text())
    assert sorted(map(int, reference)) == compared_seeds() and len(reference) >= 30
    for seed, want in reference.items():
        dets, gts = random_split(int(seed))
        result = tide_errors(dets, gts, num_classes=3)
        assert result["ap"] == pytest.approx(want["ap"], abs=1e-3)
        for name in MAIN_ERRORS:
            assert result["main"][name] == pytest.approx(want["main"][name], abs=1e-3), (seed, name)
        for name in ("fp", "fn"):
            assert result["special"][name] == pytest.approx(want["special"][name], abs=1e-3), (seed, name)


def record_tidecv_reference() -> None:
    recorded = {}
    for seed in compared_seeds():
        ap, main, special = tidecv_errors(*random_split(seed))
        recorded[str(seed)] = {"ap": ap, "main": main, "special": special}
    TIDECV_REFERENCE.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    print(f"recorded tidecv's numbers for {len(recorded)} splits in {TIDECV_REFERENCE}")


if __name__ == "__main__":
    record_tidecv_reference()
