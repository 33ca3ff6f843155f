"""frcnn/evaluation/results_io.py: bad entries of a results file are named by their index (or
dropped, counted, on request)."""

import json
import logging
import math

import numpy as np
import pytest

from frcnn.evaluation import load_predictions, write_voc_devkit_results
from frcnn.evaluation.voc_eval import Detections
from tests.helpers.fakes import make_fake_dataset

GOOD = {"image_id": "img1", "category_id": 1, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9}


def write(tmp_path, entries, name="results.json"):
    path = tmp_path / name
    # allow_nan: what json.dump writes for float("nan") / float("inf"), and what json.load reads back
    path.write_text(json.dumps(entries, allow_nan=True))
    return path


@pytest.mark.parametrize(
    "bad, reason",
    [
        (dict(GOOD, bbox=[math.nan, 0, 5, 5]), "bbox has a non-finite number"),
        (dict(GOOD, bbox=[0, 0, math.inf, 5]), "bbox has a non-finite number"),
        (dict(GOOD, bbox=[0, 0, -3, 5]), "bbox has a negative width or height"),
        (dict(GOOD, score=math.nan), "score is not finite"),
        (dict(GOOD, score=-math.inf), "score is not finite"),
    ],
)
def test_nonfinite_or_negative_entries_are_rejected_by_index_or_dropped(tmp_path, caplog, bad, reason):
    path = write(tmp_path, [GOOD, GOOD, bad, GOOD])
    with pytest.raises(ValueError, match=rf"results.json: entry 2: {reason}.*invalid_predictions=drop"):
        load_predictions(path)
    with caplog.at_level(logging.WARNING):
        kept = load_predictions(path, invalid="drop")
    assert kept == [GOOD, GOOD, GOOD]
    assert "dropped 1 of 4 entries" in caplog.text and "first: entry 2" in caplog.text


@pytest.mark.parametrize(
    "bad, reason",
    [
        (dict(GOOD, bbox="1 2 3 4"), "bbox must be 4 numbers"),
        (dict(GOOD, bbox=[1, 2, "3", 4]), "bbox must be 4 numbers"),
        (dict(GOOD, bbox=[1, 2, 3]), "bbox must be 4 numbers"),
        (dict(GOOD, score="0.9"), "score must be a number, got '0.9'"),
        (dict(GOOD, score=True), "score must be a number"),
        (dict(GOOD, category_id="1"), "category_id must be an integer"),
        (dict(GOOD, image_id=[1]), "image_id must be an integer or a string"),
        ({"image_id": 1, "bbox": [0, 0, 1, 1]}, "missing category_id, score"),
        ([1, 2, 3, 4], "expected an object"),
    ],
)
def test_entries_of_the_wrong_type_are_named(tmp_path, bad, reason):
    path = write(tmp_path, [GOOD, bad])
    for invalid in ("error", "drop"):  # structural problems are errors either way
        with pytest.raises(ValueError, match=rf"results.json: entry 1: {reason}"):
            load_predictions(path, invalid=invalid)


def test_voc_devkit_result_files(fake_dataset, tmp_path):
    dataset = make_fake_dataset(image_ids=[f"2007_{i:06d}" for i in range(12)])
    boxes = np.array([[0.0, 1.0, 10.0, 20.5], [3, 4, 5, 6]])
    dets = Detections(np.array([0, 5]), np.array([2, 2]), np.array([0.75, 0.5]), boxes)
    paths = write_voc_devkit_results(tmp_path, dets, dataset.image_ids, dataset.class_names, "test")
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt", "comp4_det_test_bird.txt"]
    assert paths[0].read_text() == ""
    # devkit boxes are 1-based inclusive: (x1 + 1, y1 + 1, x2, y2)
    lines = ["2007_000000 0.750000 1.00 2.00 10.00 20.50", "2007_000005 0.500000 4.00 5.00 5.00 6.00"]
    assert paths[1].read_text().splitlines() == lines
