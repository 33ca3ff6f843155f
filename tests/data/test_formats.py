"""The same images and boxes written in every layout frcnn reads are read alike through
``dataset=auto``: the same boxes (1e-3 px) and classes per image, and a ``debug=tiny`` training runs
on each."""

import json
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from frcnn.data import build_dataset
from frcnn.data.config import DatasetConfig, DatasetFormat
from tests.helpers.formats import FORMATS, write_format


def auto_config(root):
    cfg = OmegaConf.structured(DatasetConfig(name="auto", format=DatasetFormat.auto, root=str(root), classes=None))
    cfg.min_size, cfg.test_min_size, cfg.max_size, cfg.num_workers = [64], 64, 128, 0
    return cfg


def objects_by_file(dataset) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """image file name -> sorted (class name, box) of its objects."""
    index, found = dataset.index, {}
    for i in range(index.num_images):
        boxes = index.boxes[index.box_slice(i)].tolist()
        names = [dataset.class_names[label - 1] for label in index.labels[index.box_slice(i)]]
        found[os.path.basename(index.image_path(i))] = sorted(zip(names, map(tuple, boxes)))
    return found


@pytest.fixture(scope="module")
def layouts(tiny_shapes_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    return {name: write_format(name, tiny_shapes_root, root / name) for name in FORMATS}


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_layout_gives_the_same_boxes_and_classes(layouts, split):
    reference = build_dataset(auto_config(layouts["voc"]), split)
    want = objects_by_file(reference)
    assert len(want) == (12 if split == "train" else 6)
    for name in FORMATS[1:]:
        dataset = build_dataset(auto_config(layouts[name]), split)
        assert dataset.class_names == reference.class_names, name
        got = objects_by_file(dataset)
        assert got.keys() == want.keys(), name
        for file, objects in want.items():
            assert [n for n, _ in got[file]] == [n for n, _ in objects], (name, file)
            np.testing.assert_allclose([b for _, b in got[file]], [b for _, b in objects], atol=1e-3, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS)
def test_a_tiny_training_runs_on_each_layout_through_dataset_auto(layouts, name, tmp_path, in_process):
    run = tmp_path / "run"
    result = in_process("train.py", "debug=tiny", "dataset=auto", f"dataset.root={layouts[name]}", "device=cpu",
                        "train.max_iters=2", "train.checkpoint_period=2", f"hydra.run.dir={run}")  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["voc07"]["mAP"] <= 1.0
    assert "holds a" in (run / "train.log").read_text(), result.stdout


@pytest.mark.slow
def test_a_training_holds_a_validation_split_out_and_keeps_its_lists_in_the_run(layouts, tmp_path, in_process):
    flat = tmp_path / "flat"
    flat.mkdir()
    for split in ("train", "val"):  # one LabelMe folder: no validation split
        for path in (layouts["labelme"] / split).iterdir():
            (flat / path.name).write_bytes(path.read_bytes())
    run = tmp_path / "run"
    in_process("train.py", "debug=tiny", "dataset=auto", f"dataset.root={flat}", "dataset.val_fraction=0.25",
               "device=cpu", "train.max_iters=2", "train.checkpoint_period=2", f"hydra.run.dir={run}")  # fmt: skip
    listed = json.loads((run / "dataset_split.json").read_text())
    assert len(listed["train"]) + len(listed["val"]) == 18 and 3 <= len(listed["val"]) <= 6
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["dataset"]
    assert saved["split_file"] == str(run / "dataset_split.json")  # evaluation reads the same lists
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["voc07"]["mAP"] <= 1.0
