"""A checkpoint's saved config typed again, with the command line's overrides on top."""

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from frcnn.checkpoint.saved_config import checkpoint_run_config, saved_dataset_config, saved_model_config
from frcnn.models.config import ModelConfig
from tests.helpers.configs import compose_config


def test_checkpoint_config_with_command_line_overrides(tiny_checkpoint):
    _, train_cfg = tiny_checkpoint
    saved = OmegaConf.to_container(train_cfg, resolve=True, enum_to_str=True)
    overrides = ["checkpoint=x.pt", "model.roi_head.score_thresh=0.01", "dataset.test_sets=[2007-test]"]
    dataset, model = checkpoint_run_config(compose_config("evaluate", *overrides), saved, overrides)
    assert model.roi_head.score_thresh == 0.01
    assert model.backbone.depth == train_cfg.model.backbone.depth == 18  # the checkpoint's, not the schema default
    assert dataset.test_sets == ["2007-test"]
    assert dataset.root == train_cfg.dataset.root and dataset.max_size == train_cfg.dataset.max_size

    overrides = ["checkpoint=x.pt", "dataset=voc", "dataset.root=/data/VOCdevkit"]
    dataset, _ = checkpoint_run_config(compose_config("evaluate", *overrides), saved, overrides)
    assert dataset.name == "voc" and dataset.root == "/data/VOCdevkit"


def test_saved_nodes_are_typed_a_key_added_since_takes_its_default_and_an_unknown_one_is_named(tiny_checkpoint):
    _, train_cfg = tiny_checkpoint
    saved = OmegaConf.to_container(train_cfg, resolve=True, enum_to_str=True)
    del saved["model"]["roi_head"]["mlp_dim"]  # a checkpoint written before the key existed
    saved["model"]["rpn"]["min_size"] = 4  # an int where the schema says float
    model = saved_model_config(saved)
    assert model.roi_head.mlp_dim == ModelConfig().roi_head.mlp_dim and model.backbone.depth == 18
    assert isinstance(model.rpn.min_size, float)
    assert saved_dataset_config(saved).max_size == train_cfg.dataset.max_size
    saved["model"]["roi_head"]["no_such_key"] = 1
    with pytest.raises(ConfigKeyError, match="no_such_key"):
        saved_model_config(saved)


def test_an_old_saved_train_config_is_typed_with_the_defaults_of_the_keys_added_since(tiny_checkpoint):
    from frcnn.checkpoint.saved_config import saved_train_config
    from frcnn.config.schema import CocoBackend, TrainConfig
    from frcnn.models.config import LevelSizes

    _, train_cfg = tiny_checkpoint
    saved = OmegaConf.to_container(train_cfg, resolve=True, enum_to_str=True)
    del saved["evaluation"], saved["train"]["ema_decay"], saved["model"]["anchors"]["level_sizes"]
    del saved["model"]["rpn"]["score_thresh"]  # a checkpoint written before these keys existed
    cfg = saved_train_config(saved, "old.pt")
    assert isinstance(cfg, TrainConfig) and cfg.evaluation.coco_backend is CocoBackend.faster_coco_eval
    assert cfg.train.ema_decay == 0.0 and cfg.model.rpn.score_thresh == 0.0
    assert cfg.model.anchors.level_sizes is LevelSizes.doubling and cfg.model.backbone.depth == 18
    saved["train"]["max_iters"] = 0
    message = r"^old.pt: its saved config is not an frcnn train config \(train.max_iters must be positive, got 0\)"
    with pytest.raises(ValueError, match=message):
        saved_train_config(saved, "old.pt")
