"""ResNet-50-FPN: torchvision's fasterrcnn_resnet50_fpn state dict loaded into ours gives the
same proposals, detections and losses (the proof that the FPN detector is right)."""

import copy

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from frcnn.bench.reference import NoResizeTransform
from frcnn.models import build_model, load_weights
from tests.helpers.parity import (
    EVERY_CANDIDATE,
    assert_composed_reference_detects_alike,
    assert_same_fpn_inference,
    assert_same_training_losses,
    sample_every_candidate,
    scratch_model_config,
)


def _fpn_config(**overrides):
    # From scratch: torchvision then uses trainable BatchNorm in every stage, and so do we.
    return scratch_model_config("resnet50_fpn", **{"backbone.norm": "bn", **overrides})


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
    ours = build_model(_fpn_config(**EVERY_CANDIDATE), num_classes=2)
    load_weights(ours, path)
    sample_every_candidate(reference)
    assert_same_training_losses(ours, reference, *two_images)


def test_reference_composition_of_an_fpn_model_detects_alike(two_images):
    """torchvision_detector(model) works for FPN too (the training-parity benchmark's reference)."""
    torch.manual_seed(0)
    cfg = _fpn_config(**{"backbone.depth": 18})
    images, sizes, _ = two_images
    assert_composed_reference_detects_alike(build_model(cfg, num_classes=2), cfg, images, sizes)
