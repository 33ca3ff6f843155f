"""The detector of a checkpoint, rebuilt for inference from its own config."""

import torch
from omegaconf import OmegaConf
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.checkpoint.format import Checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.models import build_model


def test_model_from_checkpoint_keeps_the_trained_norm_layers_without_fetching_weights(tiny_checkpoint):
    _, train_cfg = tiny_checkpoint
    trained_cfg = OmegaConf.merge(train_cfg.model, {"backbone": {"norm": "frozen_bn", "weights": None}})
    trained = build_model(trained_cfg, num_classes=3)
    # the run started from ImageNet weights (norm auto -> frozen BN); rebuilding must not download them
    run_cfg = OmegaConf.merge(train_cfg.model, {"backbone": {"norm": "auto", "weights": "imagenet"}})
    config = {"model": OmegaConf.to_container(run_cfg), "dataset": {}}
    checkpoint = Checkpoint(
        model=trained.state_dict(),
        config=config,
        class_names=["circle", "square", "triangle"],
        category_ids=[1, 2, 3],
        iteration=5,
    )
    for model in (model_from_checkpoint(checkpoint, run_cfg), model_from_checkpoint(checkpoint)):  # its own config
        assert not model.training
        assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
        for name, value in model.state_dict().items():
            assert torch.equal(value, trained.state_dict()[name]), name
