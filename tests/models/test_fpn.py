"""ResNet-50-FPN: torchvision's fasterrcnn_resnet50_fpn state dict loaded into ours gives the
same proposals, detections and losses (the proof that the FPN detector is right)."""

import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from frcnn.bench.reference import NoResizeTransform
from frcnn.models import ModelConfig, build_model, load_weights
from tests.helpers.parity import (
    assert_composed_reference_detects_alike,
    assert_same_fpn_inference,
    assert_same_training_losses,
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "model" / "resnet50_fpn.yaml"


def _fpn_config(**overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIG))
    # From scratch: torchvision then uses trainable BatchNorm in every stage, and so do we.
    cfg.backbone.weights, cfg.backbone.norm, cfg.backbone.frozen_stages = None, "bn", 0
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def torchvision_fpn(tmp_path_factory):
    """A randomly initialised torchvision fasterrcnn_resnet50_fpn (2 classes + background), its
    state dict saved to a file (as a user's downloaded or fine-tuned weights would be)."""
    torch.manual_seed(0)
    reference = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    reference.transform = NoResizeTransform()  # inputs come resized and normalised
    path = tmp_path_factory.mktemp("weights") / "fasterrcnn_resnet50_fpn.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_torchvision_state_dict_loads_key_by_key(torchvision_fpn):
    _, path = torchvision_fpn
    ours = build_model(_fpn_config(), num_classes=2)
    report = load_weights(ours, path)
    assert report["mismatched"] == [] and report["missing"] == [] and report["unexpected"] == []
    other_classes = build_model(_fpn_config(), num_classes=5)
    report = load_weights(other_classes, path)
    # The fine-tuning path: only the class-dependent predictor is re-initialised.
    assert sorted(k.split(":")[0] for k in report["mismatched"]) == [
        "roi_head.cls_loc.bias",
        "roi_head.cls_loc.weight",
        "roi_head.score.bias",
        "roi_head.score.weight",
    ]


def test_same_proposals_and_detections_as_torchvision(torchvision_fpn, two_images):
    reference, path = torchvision_fpn
    ours = build_model(_fpn_config(), num_classes=2)
    load_weights(ours, path)
    images, sizes, _ = two_images
    assert_same_fpn_inference(ours, reference, images, sizes, min_proposals=101, min_detections=6)


def test_same_losses_as_torchvision_when_every_candidate_is_sampled(torchvision_fpn, two_images):
    reference, path = copy.deepcopy(torchvision_fpn[0]), torchvision_fpn[1]
    ours = build_model(
        _fpn_config(**{"rpn.batch_size_per_image": 100_000, "roi_head.batch_size_per_image": 100_000}), num_classes=2
    )
    load_weights(ours, path)
    reference.rpn.fg_bg_sampler.batch_size_per_image = 100_000
    reference.roi_heads.fg_bg_sampler.batch_size_per_image = 100_000
    assert_same_training_losses(ours, reference, *two_images)


def test_reference_composition_of_an_fpn_model_detects_alike(two_images):
    """torchvision_detector(model) works for FPN too (the training-parity benchmark's reference)."""
    torch.manual_seed(0)
    cfg = _fpn_config(**{"backbone.depth": 18})
    images, sizes, _ = two_images
    assert_composed_reference_detects_alike(build_model(cfg, num_classes=2), cfg, images, sizes)
