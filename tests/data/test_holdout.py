"""The validation split held out of a dataset without one (frcnn.data.holdout): class-stratified,
seeded, and read back from its file once written."""

import json

import numpy as np
import pytest

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.holdout import held_out_split, stratified_holdout
from frcnn.data.validation import DatasetError


def index_of(labels_per_image: list[list[int]]) -> AnnotationIndex:
    boxes = [[0.0, 0.0, 4.0, 4.0] for labels in labels_per_image for _ in labels]
    count = len(boxes)
    return AnnotationIndex.build(
        image_ids=[f"img{i}" for i in range(len(labels_per_image))], image_dirs=["."],
        dir_index=[0] * len(labels_per_image), file_names=[f"img{i}.jpg" for i in range(len(labels_per_image))],
        heights=[8] * len(labels_per_image), widths=[8] * len(labels_per_image),
        boxes_per_image=[len(labels) for labels in labels_per_image], boxes=boxes,
        labels=[label for labels in labels_per_image for label in labels],
        difficult=[False] * count, iscrowd=[False] * count, object_ids=list(range(count)),
    )  # fmt: skip


def test_every_stratum_gives_its_share_and_a_rare_class_is_in_both_splits():
    # class 1 in 40 images, class 2 (rare) in 10 of them too, class 3 in 2 images, 8 without objects
    labels = [[1] for _ in range(30)] + [[1, 2] for _ in range(10)] + [[3], [3, 1]] + [[] for _ in range(8)]
    held = stratified_holdout(index_of(labels), fraction=0.2, seed=0)
    assert held[:30].sum() == 6 and held[30:40].sum() == 2 and held[40:42].sum() == 1 and held[42:].sum() == 2
    assert np.array_equal(held, stratified_holdout(index_of(labels), fraction=0.2, seed=0))
    assert not np.array_equal(held, stratified_holdout(index_of(labels), fraction=0.2, seed=1))


def test_the_lists_are_written_once_and_read_back(tmp_path):
    index = index_of([[1]] * 10)
    split_file = tmp_path / "run" / "dataset_split.json"
    train, val = held_out_split(index, 0.3, seed=0, split_file=str(split_file))
    assert val.sum() == 3 and np.array_equal(train, ~val)
    listed = json.loads(split_file.read_text())
    assert listed["val"] == [f"img{i}" for i in np.flatnonzero(val)] and len(listed["train"]) == 7
    again = held_out_split(index, 0.5, seed=9, split_file=str(split_file))  # the file wins
    assert np.array_equal(again[1], val)
    grown = index_of([[1]] * 12)  # two images added since: in neither list
    train, val = held_out_split(grown, 0.3, seed=0, split_file=str(split_file))
    assert not train[10:].any() and not val[10:].any()


def test_a_split_file_naming_unknown_images_is_one_problem(tmp_path):
    split_file = tmp_path / "dataset_split.json"
    split_file.write_text(json.dumps({"train": ["img0", "gone"], "val": ["img1"]}))
    with pytest.raises(DatasetError, match=r"dataset_split.json: 1 listed images are not in the dataset any more"):
        held_out_split(index_of([[1], [1]]), 0.5, seed=0, split_file=str(split_file))
