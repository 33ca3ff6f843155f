"""ResNet-50-FPN v2 (``model=resnet50_fpn_v2``): torchvision's fasterrcnn_resnet50_fpn_v2 state dict
loads into ours key by key, and then both give the same proposals, detections and losses, in eval
and in train mode; its COCO weights work as ``checkpoint=`` and ``model.weights=``, and offline
the error names the file to place. The torchvision detector is a randomly initialised one with
non-trivial BatchNorm statistics, placed in a torch cache under COCO_V1's file name, as a download
would leave it."""

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, fasterrcnn_resnet50_fpn_v2
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

from frcnn.bench.reference import NoResizeTransform
from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.models import build_model, load_weights
from tests.helpers.configs import compose_train
from tests.helpers.parity import (
    EVERY_CANDIDATE,
    assert_composed_reference_detects_alike,
    assert_same_detections,
    assert_same_fpn_inference,
    assert_same_training_losses,
    assert_torchvision_weights_load_key_by_key,
    sample_every_candidate,
    scratch_model_config,
    trained_like_batchnorm,
    unpadded,
)
from tests.helpers.torch_cache import (
    assert_offline_errors_name_the_url_and_the_file,
    filled_torch_home,
    offline_torch_home,
)

NAME = "fasterrcnn_resnet50_fpn_v2"
WEIGHTS = FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1
FILE = Path(WEIGHTS.url).name
FAVOURED = [1, 18, 62]  # person, dog, chair: scored above the 0.05 threshold


def _v2_config(**overrides):
    return scratch_model_config("resnet50_fpn_v2", **overrides)


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """A torch cache holding a random fasterrcnn_resnet50_fpn_v2 (91 outputs, as COCO_V1) under
    COCO_V1's file name; the detector itself (eval mode), for comparison."""
    torch.manual_seed(0)
    reference = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)
    trained_like_batchnorm(reference)
    with torch.no_grad():
        reference.roi_heads.box_predictor.cls_score.bias[FAVOURED] += 2.0
    reference.transform = NoResizeTransform()  # inputs come resized and normalised
    reference.eval()
    return filled_torch_home(tmp_path_factory.mktemp("torch_home"), reference.state_dict(), FILE), reference


@pytest.fixture
def cached(torch_home, monkeypatch):
    home, reference = torch_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    return reference


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch cache in ``tmp_path`` and no network: every download fails as it does offline."""
    return offline_torch_home(tmp_path, monkeypatch) / FILE


def test_torchvision_state_dict_loads_key_by_key(cached):
    file = Path(torch.hub.get_dir()) / "checkpoints" / FILE
    assert_torchvision_weights_load_key_by_key(_v2_config(), NAME, cached, WEIGHTS.meta["categories"], file)


def test_same_proposals_and_detections_as_torchvision(cached, two_images):
    ours = build_model(_v2_config(), num_classes=90)
    load_weights(ours, f"torchvision:{NAME}")
    images, sizes, _ = two_images
    assert_same_fpn_inference(ours, cached, images, sizes, min_proposals=50, min_detections=20)


def test_same_losses_as_torchvision_when_every_candidate_is_sampled(cached, two_images):
    """Train mode: BatchNorm normalises with batch statistics in the backbone, the pyramid and the
    box head; the box head's batch is the sampled RoIs alone, as torchvision's is."""
    reference = copy.deepcopy(cached)
    settings = {**EVERY_CANDIDATE, "rpn.pre_nms_top_n_train": 150, "rpn.post_nms_top_n_train": 300}
    ours = build_model(_v2_config(**settings), num_classes=90)
    load_weights(ours, f"torchvision:{NAME}")
    padded_rows = copy.deepcopy(ours)
    sample_every_candidate(reference, top_n=(150, 300))
    assert all(p.requires_grad for p in reference.parameters()) and all(p.requires_grad for p in ours.parameters())
    assert_same_training_losses(ours, reference, *two_images)
    # The fixed-shape batch has padding rows here (fewer candidates than proposal slots): in the
    # box head's BatchNorm statistics they would change every loss of the head.
    padded_rows.roi_head.sampled_rows_only = False
    padded_rows.train()
    roi_cls = padded_rows(*two_images)["roi_cls"]
    assert (roi_cls - ours(*two_images)["roi_cls"]).abs() > 1e-4


@pytest.mark.parametrize("frozen_stages, trainable_layers", [(0, 5), (2, 3), (5, 0)])
def test_frozen_stages_are_torchvisions_trainable_backbone_layers(frozen_stages, trainable_layers):
    ours = build_model(_v2_config(**{"backbone.frozen_stages": frozen_stages}), num_classes=2)
    theirs = _resnet_fpn_extractor(resnet50(), trainable_layers, norm_layer=nn.BatchNorm2d)
    trainable = sorted(name for name, p in ours.backbone.named_parameters() if p.requires_grad)
    assert trainable == sorted(name for name, p in theirs.named_parameters() if p.requires_grad)


def test_checkpoint_holds_the_coco_layout_and_detects_as_torchvision_does(cached, two_images):
    checkpoint = load_checkpoint(f"torchvision:{NAME}")
    assert checkpoint.class_names == WEIGHTS.meta["categories"][1:] and checkpoint.category_ids == list(range(1, 91))
    model_cfg = checkpoint.config["model"]
    assert model_cfg["backbone"]["norm"] == "bn" and model_cfg["backbone"]["weights"] is None
    assert model_cfg["rpn"]["conv_depth"] == 2 and model_cfg["roi_head"]["box_head"] == "conv_fc"
    model = model_from_checkpoint(checkpoint)  # every tensor loads (strict)
    images, sizes, _ = two_images
    with torch.no_grad():
        ours, theirs = model(images, sizes), cached(unpadded(images, sizes))
    assert_same_detections(ours, theirs, min_count=20)


def test_offline_errors_name_the_url_and_the_file_to_place(offline):
    assert_offline_errors_name_the_url_and_the_file(NAME, WEIGHTS.url, offline)


def test_reference_composition_of_a_v2_model_detects_alike(two_images):
    """torchvision_detector(model) composes the v2 parts too (the training-parity benchmark's reference)."""
    torch.manual_seed(0)
    cfg = _v2_config(**{"backbone.depth": 18})
    images, sizes, _ = two_images
    assert_composed_reference_detects_alike(build_model(cfg, num_classes=2), cfg, images, sizes)


def test_finetune_experiment_mirrors_the_v1_one():
    v2, v1 = compose_train("experiment=finetune_r50_fpn_v2"), compose_train("experiment=finetune_r50_fpn")
    assert v2.model.weights == f"torchvision:{NAME}" and v2.model.backbone.weights is None
    assert v2.model.backbone.norm == "bn" and v2.model.fpn_norm == "bn" and v2.model.rpn.conv_depth == 2
    assert v2.model.roi_head.box_head == "conv_fc" and list(v2.model.roi_head.conv_dims) == [256] * 4
    for node in ("dataset", "optimizer", "schedule", "train"):
        assert v2[node] == v1[node], node


@pytest.mark.parametrize(
    "key, value", [("fpn_norm", "gn"), ("roi_head.box_head", "conv"), ("roi_head.conv_norm", "frozen_bn")]
)
def test_unknown_v2_part_is_named(key, value):
    with pytest.raises(ValueError, match=f"model.{key} must be one of"):
        build_model(_v2_config(**{"backbone.depth": 18, key: value}), num_classes=2)
