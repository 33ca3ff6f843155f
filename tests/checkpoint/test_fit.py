"""Weights that do not fit the model are one line naming the checkpoint and the key that differs."""

import copy

import pytest
from omegaconf import OmegaConf

from frcnn.checkpoint.fit import CheckpointMismatchError, load_checkpoint_weights
from frcnn.checkpoint.format import Checkpoint
from frcnn.models import build_model


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"depth": 34}, "it holds a ResNet-18 backbone, this model is ResNet-34 (model.backbone.depth)"),
        ({"classes": 5}, "it was trained on 3 classes, this model has 5 (the dataset's class list)"),
        ({"architecture": "fpn"}, "it holds a c4 detector, this model is fpn (model.architecture)"),
    ],
)
def test_a_mismatched_checkpoint_is_named_with_the_reason(tiny_cfg, change, reason):
    cfg = tiny_cfg()
    source = build_model(cfg.model, num_classes=3)
    checkpoint = Checkpoint(
        model=source.state_dict(),
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        class_names=["a", "b", "c"],
        category_ids=[1, 2, 3],
    )
    model_cfg = copy.deepcopy(cfg.model)
    if "depth" in change:
        model_cfg.backbone.depth = change["depth"]
    if "architecture" in change:
        model_cfg = tiny_cfg("model=resnet50_fpn", "model.backbone.depth=18").model
    classes = change.get("classes", 3)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint_weights(build_model(model_cfg, num_classes=classes), checkpoint, "ckpt.pt", model_cfg, classes)
    assert str(info.value) == f"ckpt.pt does not fit this model: {reason}"
