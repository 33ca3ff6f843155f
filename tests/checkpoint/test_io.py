"""Checkpoint files: atomic writes, a full disk named as such, reading with one-line errors that
name the file (a corrupted tensor included: the checksum), and the fine-tuning reader
(``model.weights=``) on a checkpoint file."""

import errno
import logging
import os
import shutil

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
    save_checkpoint(
        Checkpoint(
            model=source.state_dict(),
            config={"model": {}, "dataset": {}},
            class_names=["a", "b"],
            category_ids=[1, 2],
            iteration=5,
        ),
        tmp_path / "src.pt",
    )
    target = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 5))
    fresh_head = target[1].weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        report = load_weights(target, tmp_path / "src.pt")
    assert torch.equal(target[0].weight, source[0].weight)  # shared layers loaded
    assert torch.equal(target[1].weight, fresh_head)  # predictor keeps its initialisation
    assert report["mismatched"] == ["1.weight: weights (3, 8) vs model (5, 8)", "1.bias: weights (3,) vs model (5,)"]
    assert report["missing"] == [] and report["unexpected"] == []
    assert "1.weight: weights (3, 8) vs model (5, 8)" in caplog.text


def test_a_flipped_tensor_byte_is_named_on_load(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint = stand_in_checkpoint(3, resumable=True)
    checkpoint.model["w"] = torch.arange(1000.0, 1016.0)
    save_checkpoint(checkpoint, path)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(checkpoint.model["w"].numpy().tobytes())
    assert at > 0
    data[at + 17] ^= 0xFF
    data[at + 18] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checkpoint .*last.pt is corrupted: its tensors do not match") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_a_checkpoint_without_a_checksum_still_loads(tmp_path):
    state = stand_in_checkpoint(4, resumable=True).to_dict()  # as written before checksums existed
    torch.save(state, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").iteration == 4


ZIP_WRITER_FAILURE = "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"


def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(stand_in_checkpoint(1), path)

    def zip_writer_failure(obj, f):
        f.write(b"partial")
        raise RuntimeError(ZIP_WRITER_FAILURE)

    monkeypatch.setattr(torch, "save", zip_writer_failure)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(OSError) as info:
        save_checkpoint(stand_in_checkpoint(2), path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert isinstance(info.value.__cause__, RuntimeError)  # the zip writer's own report, kept as the cause
    assert sorted(os.listdir(tmp_path)) == ["last.pt"] and load_checkpoint(path).iteration == 1

    # The same failure with space left is not a full disk: torch's error as it is.
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="inline_container"):
        save_checkpoint(stand_in_checkpoint(2), path)
