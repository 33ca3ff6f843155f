"""Experiments that reproduce a published recipe: the values the recipe names, as composed."""

import math

import pytest

from frcnn.engine.trainer import check_train_config
from tests.helpers.configs import compose_train

COCO_TRAIN_IMAGES = 117_266  # train2017 images with annotations (torchvision's training set)
VOC0712_TRAIN_IMAGES = 16_551


@pytest.mark.parametrize(
    "experiment, dataset, images, epochs, lr_epochs, warmup, max_size",
    [
        ("coco_r50_fpn_v2", "coco", COCO_TRAIN_IMAGES, 400, [352, 384], 1000, 1333),
        ("voc0712_r50_fpn_v2", "voc", VOC0712_TRAIN_IMAGES, 268, [236, 257], 258, 1000),
    ],
)
def test_fpn_v2_recipe(experiment, dataset, images, epochs, lr_epochs, warmup, max_size):
    """torchvision PR #5763: batch 64 at LR 0.1, weight decay 4e-5, SyncBN, LSJ, multi-step."""
    cfg = compose_train(f"experiment={experiment}")
    check_train_config(cfg)
    assert cfg.dataset.name == dataset
    assert cfg.model.architecture == "fpn" and cfg.model.backbone.norm == "bn" and cfg.model.fpn_norm == "bn"
    assert cfg.model.roi_head.box_head == "conv_fc" and cfg.model.rpn.conv_depth == 2
    assert cfg.model.backbone.weights is None and cfg.model.weights is None  # from scratch
    assert cfg.dataset.augmentation.value == "lsj" and cfg.dataset.max_size == max_size
    assert cfg.train.sync_bn
    assert cfg.optimizer.name.value == "sgd" and cfg.optimizer.momentum == 0.9
    assert cfg.optimizer.base_lr == 0.1 and cfg.optimizer.reference_batch_size == 64
    assert cfg.optimizer.weight_decay == pytest.approx(4e-5)
    per_epoch = math.ceil(images / 64)
    assert cfg.train.max_iters == epochs * per_epoch
    assert cfg.schedule.name.value == "multistep" and cfg.schedule.gamma == 0.1
    assert list(cfg.schedule.steps) == [e * per_epoch for e in lr_epochs]
    assert cfg.schedule.warmup_iters == min(1000, per_epoch - 1) and cfg.schedule.warmup_factor == 0.001
    assert cfg.train.batch_size == 2


def test_voc_recipe_keeps_the_coco_step_fractions():
    coco, voc = compose_train("experiment=coco_r50_fpn_v2"), compose_train("experiment=voc0712_r50_fpn_v2")
    for c, v in zip(coco.schedule.steps, voc.schedule.steps):
        assert c / coco.train.max_iters == pytest.approx(v / voc.train.max_iters, abs=0.005)
