"""Checkpoint files: atomic writes, pruning, resume resolution, weights-only loading."""

import logging
import os

import pytest
import torch
from torch import nn

from frcnn.checkpoint.io import (
    CheckpointDir,
    CheckpointError,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from frcnn.models import load_weights


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 1}, path)

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "iteration": 2}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["iteration"] == 1 and torch.equal(state["model"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_load_checkpoint_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)


def test_checkpoint_dir_keeps_last_n_periodic(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=2)
    for it in (100, 200, 300):
        ckpts.save_last({"model": {}, "iteration": it}, periodic=True)
    ckpts.save_last({"model": {}, "iteration": 350}, periodic=False)
    assert [p.name for p in ckpts.periodic()] == ["model_0000200.pt", "model_0000300.pt"]
    assert load_checkpoint(ckpts.last)["iteration"] == 350


def test_resolve_resume(tmp_path):
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None  # fresh start
    save_checkpoint({"model": {}}, tmp_path / "checkpoints" / "last.pt")
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoints" / "last.pt"
    assert resolve_resume(str(tmp_path / "checkpoints" / "last.pt"), "/elsewhere").is_file()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        resolve_resume(str(tmp_path / "missing.pt"), tmp_path)


def test_load_weights_reports_shape_mismatch(tmp_path, caplog):
    source = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))  # e.g. 2 classes + background
    save_checkpoint({"model": source.state_dict(), "iteration": 5}, tmp_path / "src.pt")
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
