"""Checkpoint files: atomic writes, reading with one-line errors that name the file, and the
fine-tuning reader (``model.weights=``) on a checkpoint file."""

import logging
import os

import pytest
import torch
from torch import nn

from frcnn.checkpoint.format import Checkpoint
from frcnn.checkpoint.io import CheckpointError, load_checkpoint, save_checkpoint
from frcnn.models import load_weights
from tests.helpers.checkpoints import stand_in_checkpoint


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(stand_in_checkpoint(1, weight=1.0), path)

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(stand_in_checkpoint(2, weight=0.0), path)
    monkeypatch.undo()
    checkpoint = load_checkpoint(path)
    assert checkpoint.iteration == 1 and torch.equal(checkpoint.model["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_load_checkpoint_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*bad.pt \(.*\): is it a checkpoints/\*.pt"):
        load_checkpoint(bad)


def test_unreadable_checkpoints_are_one_line_with_a_reason(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt: the file is empty \(0 bytes"):
        load_checkpoint(empty)
    foreign = tmp_path / "list.pt"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="list.pt is not an frcnn checkpoint") as info:
        load_checkpoint(foreign)
    assert "\n" not in str(info.value)
    state_dict = tmp_path / "state_dict.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state_dict)  # weights for model.weights=, not a checkpoint
    with pytest.raises(CheckpointError, match="state_dict.pt lacks model, config, class_names, category_ids"):
        load_checkpoint(state_dict)


def test_load_weights_reads_a_checkpoint_file_and_reports_shape_mismatch(tmp_path, caplog):
    source = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))  # e.g. 2 classes + background
    save_checkpoint(Checkpoint(model=source.state_dict(), config={"model": {}, "dataset": {}}, class_names=["a", "b"],
                               category_ids=[1, 2], iteration=5), tmp_path / "src.pt")
    target = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 5))
    fresh_head = target[1].weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        report = load_weights(target, tmp_path / "src.pt")
    assert torch.equal(target[0].weight, source[0].weight)  # shared layers loaded
    assert torch.equal(target[1].weight, fresh_head)  # predictor keeps its initialisation
    assert report["mismatched"] == ["1.weight: weights (3, 8) vs model (5, 8)",
                                    "1.bias: weights (3,) vs model (5,)"]
    assert report["missing"] == [] and report["unexpected"] == []
    assert "1.weight: weights (3, 8) vs model (5, 8)" in caplog.text
