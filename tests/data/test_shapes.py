"""Synthetic shapes: deterministic, readable by both loaders with identical boxes, reused."""

import filecmp
import json
import multiprocessing
import os

import numpy as np
import pytest
import torch

from frcnn.data import build_dataset, generate_shapes
from frcnn.data.config import ShapesConfig
from frcnn.data.shapes import MARKER, render_image

SMALL = dict(num_train=4, num_test=2, min_image_size=64, max_image_size=80)


def _tree(root):
    files = (os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    return sorted(f for f in files if f != ".shapes.lock")


def test_generation_is_deterministic(tmp_path):
    a, b, c = (str(tmp_path / name) for name in "abc")
    generate_shapes(a, seed=7, **SMALL)
    generate_shapes(b, seed=7, **SMALL)
    generate_shapes(c, seed=8, **SMALL)
    files = _tree(a)
    assert files == _tree(b)
    assert "coco/instances_train.json" in files and "ImageSets/Main/test.txt" in files
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    train_json = "coco/instances_train.json"
    assert not filecmp.cmp(os.path.join(a, train_json), os.path.join(c, train_json), shallow=False)


def test_voc_and_coco_loaders_read_identical_boxes(tiny_shapes_cfg):
    voc_train = build_dataset(tiny_shapes_cfg(format="voc"), "train")
    coco_train = build_dataset(tiny_shapes_cfg(format="coco"), "train")
    assert voc_train.class_names == coco_train.class_names == ["circle", "square", "triangle"]
    assert voc_train.category_ids == coco_train.category_ids == [1, 2, 3]
    assert len(voc_train) == len(coco_train) == 12
    assert voc_train.image_ids[0] == "train_000000" and coco_train.image_ids[0] == 1
    for i in range(len(voc_train)):
        v, c = voc_train.get_annotation(i), coco_train.get_annotation(i)
        assert (v["height"], v["width"]) == (c["height"], c["width"])
        assert torch.equal(v["boxes"], c["boxes"]) and torch.equal(v["labels"], c["labels"])
    assert sum(len(voc_train.get_annotation(i)["labels"]) for i in range(12)) > 12
    image_v, target_v = voc_train[(3, 11)]
    image_c, target_c = coco_train[(3, 11)]
    assert torch.equal(image_v, image_c) and torch.equal(target_v["boxes"], target_c["boxes"])
    assert len(build_dataset(tiny_shapes_cfg(format="coco"), "test")) == 6


def test_generation_reuses_matching_files_and_redoes_others(tmp_path):
    root = str(tmp_path)
    generate_shapes(root, **SMALL)
    image = os.path.join(root, "JPEGImages", "train_000000.jpg")
    stamp = os.stat(image).st_mtime_ns
    generate_shapes(root, **SMALL)
    assert os.stat(image).st_mtime_ns == stamp  # matching parameters: nothing rewritten

    os.remove(os.path.join(root, MARKER))  # as if a generation had been killed half-way
    os.remove(image)
    generate_shapes(root, **SMALL)
    assert os.path.exists(image)

    generate_shapes(root, **{**SMALL, "num_train": 5})
    with open(os.path.join(root, MARKER)) as f:
        assert json.load(f)["num_train"] == 5
    with open(os.path.join(root, "ImageSets", "Main", "train.txt")) as f:
        assert len(f.read().split()) == 5


def _generate(root):
    generate_shapes(root, **SMALL)


def test_concurrent_generation_is_safe(tmp_path):
    root = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_generate, args=(root,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    reference = str(tmp_path / "reference")
    generate_shapes(reference, **SMALL)
    files = _tree(reference)
    assert _tree(root) == files
    _, mismatch, errors = filecmp.cmpfiles(root, reference, files, shallow=False)
    assert not mismatch and not errors


def test_rendered_images_follow_the_parameters():
    params = ShapesConfig()
    counts, empty = np.zeros(4), 0
    for i in range(150):
        pixels, objects = render_image(0, 0, i, params)
        height, width = pixels.shape[:2]
        assert 128 <= height <= 192 and 128 <= width <= 192 and pixels.dtype == np.uint8
        assert len(objects) <= params.max_objects
        empty += not objects
        for label, (x1, y1, x2, y2), area in objects:
            counts[label] += 1
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            # visible extent: at most the drawn side, which is at most half the short side (+1 px)
            assert max(x2 - x1, y2 - y1) <= params.max_object_size * min(height, width) + 2
            assert 0 < area <= (x2 - x1) * (y2 - y1)
    assert counts[1:].min() > 50  # all three classes, roughly balanced
    assert 1 <= empty <= 20  # ~5% empty images


@pytest.mark.parametrize("split", ["train", "test"])
def test_build_dataset_generates_shapes_on_first_use(tmp_path, tiny_shapes_cfg, split):
    ds = build_dataset(tiny_shapes_cfg(root=tmp_path / "new"), split)
    assert len(ds) == (12 if split == "train" else 6)
    assert os.path.exists(tmp_path / "new" / MARKER)
