"""Checkpoints that cannot be read or do not fit are one line naming the file and the reason,
resume falls back to the newest readable one, interrupted saves are cleaned up, and a partial
last line of losses.jsonl does not block a resume."""

import copy
import json
import logging
import os

import pytest
import torch
from omegaconf import OmegaConf

from frcnn.checkpoint.io import (
    CheckpointDir,
    CheckpointError,
    load_checkpoint,
    load_resume_checkpoint,
    save_checkpoint,
)
from frcnn.engine.events import records_up_to
from frcnn.engine.trainer import train
from frcnn.models import build_model
from frcnn.checkpoint.fit import CheckpointMismatchError, load_checkpoint_weights


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog):
    ckpts = CheckpointDir(tmp_path / "checkpoints", keep=3)
    for iteration in (2, 4):
        ckpts.save_last({"model": {}, "iteration": iteration}, periodic=True)
    ckpts.last.write_bytes(ckpts.last.read_bytes()[:100])  # killed in the middle of a copy
    with caplog.at_level(logging.WARNING):
        path, state = load_resume_checkpoint("auto", tmp_path)
    assert path.name == "model_0000004.pt" and state["iteration"] == 4
    assert "last.pt" in caplog.text and "resuming from" in caplog.text and "model_0000004.pt" in caplog.text

    ckpts.last.write_bytes(b"")
    (ckpts.directory / "model_0000004.pt").write_bytes(b"")
    (ckpts.directory / "model_0000002.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no checkpoint .* can be read: .*last.pt: the file is empty") as info:
        load_resume_checkpoint("auto", tmp_path)
    assert "\n" not in str(info.value) and str(info.value).count("empty") == 3
    with pytest.raises(CheckpointError, match="empty"):  # a named file: no fallback
        load_resume_checkpoint(str(ckpts.last), tmp_path)


def test_unreadable_checkpoints_are_one_line_with_a_reason(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt: the file is empty \(0 bytes"):
        load_checkpoint(empty)
    foreign = tmp_path / "list.pt"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="list.pt is not an frcnn checkpoint"):
        load_checkpoint(foreign)


def test_leftover_temporary_files_are_removed_on_the_next_start(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=1)
    save_checkpoint({"model": {}, "iteration": 3}, ckpts.last)
    stale = [tmp_path / ".last.pt.k1llq7.tmp", tmp_path / ".model_0000003.pt.x9.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    ckpts.remove_temporaries()
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_trainer_cleans_temporaries_at_start(tiny_cfg, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.pt.a1b2c3.tmp").write_bytes(b"\0" * 100)
    train(tiny_cfg("train.max_iters=1", "train.eval_at_end=false"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]


@pytest.mark.parametrize("change, reason", [
    ({"depth": 34}, "it holds a ResNet-18 backbone, this model is ResNet-34 (model.backbone.depth)"),
    ({"classes": 5}, "it was trained on 3 classes, this model has 5 (the dataset's class list)"),
    ({"architecture": "fpn"}, "it holds a c4 detector, this model is fpn (model.architecture)"),
])
def test_a_mismatched_checkpoint_is_named_with_the_reason(tiny_cfg, change, reason):
    cfg = tiny_cfg()
    source = build_model(cfg.model, num_classes=3)
    checkpoint = {"model": source.state_dict(), "class_names": ["a", "b", "c"],
                  "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)}
    model_cfg = copy.deepcopy(cfg.model)
    if "depth" in change:
        model_cfg.backbone.depth = change["depth"]
    if "architecture" in change:
        model_cfg = tiny_cfg("model=resnet50_fpn", "model.backbone.depth=18").model
    classes = change.get("classes", 3)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint_weights(build_model(model_cfg, num_classes=classes), checkpoint, "ckpt.pt", model_cfg, classes)
    assert str(info.value) == f"ckpt.pt does not fit this model: {reason}"


def test_losses_jsonl_with_a_partial_last_line(tmp_path, caplog):
    path = tmp_path / "losses.jsonl"
    path.write_text('{"iteration": 1, "loss/total": 2.0}\n{"iteration": 2, "loss/total": 1.5}\n{"iteration": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert [json.loads(line)["iteration"] for line in records_up_to(path, 2)] == [1, 2]
    assert "incomplete last line 3" in caplog.text
    path.write_text('{"iteration": 1}\n{"iter\n{"iteration": 3}\n')
    with pytest.raises(ValueError, match=r"losses.jsonl: line 2 is not a losses record"):
        records_up_to(path, 3)
