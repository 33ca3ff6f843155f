"""MobileNetV3-Large-FPN (``model=mobilenet_v3_large_fpn`` and ``model=mobilenet_v3_large_320_fpn``):
torchvision's fasterrcnn_mobilenet_v3_large_fpn / _320_fpn state dicts load into ours key by key,
and then both give the same proposals, detections and losses, in eval and in train mode; their COCO
weights work as ``checkpoint=`` and ``model.weights=``, and offline the error names the file to
place. Each torchvision detector is a randomly initialised one with non-trivial BatchNorm
statistics and an RPN whose objectness straddles its 0.05 score threshold, placed in a torch cache
under COCO_V1's file name, as a download would leave it."""

import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    fasterrcnn_mobilenet_v3_large_320_fpn,
    fasterrcnn_mobilenet_v3_large_fpn,
)
from torchvision.models.detection.backbone_utils import _mobilenet_extractor

from frcnn.bench.reference import NoResizeTransform
from frcnn.checkpoint.fit import CheckpointMismatchError
from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.config import group_option
from frcnn.models import ModelConfig, build_model, load_weights
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

# torchvision detector -> (its builder, its weights, our model config)
DETECTORS = {
    "fasterrcnn_mobilenet_v3_large_fpn": (
        fasterrcnn_mobilenet_v3_large_fpn,
        FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        "mobilenet_v3_large_fpn",
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        fasterrcnn_mobilenet_v3_large_320_fpn,
        FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        "mobilenet_v3_large_320_fpn",
    ),
}
FAVOURED = [1, 18, 62]  # person, dog, chair: scored above the 0.05 threshold
RPN_BIAS = -2.944  # sigmoid = 0.05, torchvision's rpn_score_thresh: about half the proposals fall below it


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def torch_home(request, tmp_path_factory):
    """(name, a torch cache holding a random detector ``name`` (91 outputs, as COCO_V1) under
    COCO_V1's file name, the detector itself in eval mode)."""
    name = request.param
    builder, weights, _ = DETECTORS[name]
    torch.manual_seed(0)
    reference = builder(weights=None, weights_backbone=None)
    trained_like_batchnorm(reference)  # a MobileNetV3's features at initialisation are all but constant
    with torch.no_grad():
        reference.rpn.head.cls_logits.weight.normal_(std=0.1)
        reference.rpn.head.cls_logits.bias.fill_(RPN_BIAS)
        reference.roi_heads.box_predictor.cls_score.bias[FAVOURED] += 2.0
    reference.transform = NoResizeTransform()  # inputs come resized and normalised
    reference.eval()
    # The file has the layout of the COCO weights, whose backbone has frozen BatchNorm: no
    # num_batches_tracked.
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith(".num_batches_tracked")}
    home = tmp_path_factory.mktemp("torch_home")
    return name, filled_torch_home(home, state, Path(weights.url).name), reference


@pytest.fixture
def cached(torch_home, monkeypatch):
    """(name, our model config's name, the reference detector) with ``$TORCH_HOME`` at its cache."""
    name, home, reference = torch_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    return name, DETECTORS[name][2], reference


def test_torchvision_state_dict_loads_key_by_key(cached):
    name, config, reference = cached
    weights = DETECTORS[name][1]
    frozen_bn = scratch_model_config(config, **{"backbone.norm": "frozen_bn"})  # the COCO weights' norm
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    assert_torchvision_weights_load_key_by_key(frozen_bn, name, reference, weights.meta["categories"], file)


def test_same_proposals_and_detections_as_torchvision(cached, two_images):
    name, config, reference = cached
    ours = build_model(scratch_model_config(config), num_classes=90)
    load_weights(ours, f"torchvision:{name}")
    images, sizes, _ = two_images
    assert_same_fpn_inference(ours, reference, images, sizes, min_proposals=20, min_detections=20)
    # The RPN's score threshold drops proposals here: without it there are more.
    unfiltered = copy.deepcopy(ours).eval()
    unfiltered.rpn.score_thresh = 0.0
    with torch.inference_mode():
        features = ours.backbone(images)
        kept = ours.rpn(features, torch.tensor(sizes))[0].valid.sum()
        assert unfiltered.rpn(features, torch.tensor(sizes))[0].valid.sum() > kept


@pytest.fixture
def odd_grid_images() -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Two noisy images with bright rectangles, padded to 160x224: 5x7 cells at stride 32, so the
    stride-64 level has 3x4 (rounded up), which torchvision places 53 px down and 56 px across."""
    generator = torch.Generator().manual_seed(1)
    images = 0.1 * torch.randn(2, 3, 160, 224, generator=generator)
    for image, boxes in zip(images, [[(10, 20, 90, 150), (100, 60, 200, 140)], [(40, 30, 180, 120)]]):
        for channel, (x1, y1, x2, y2) in enumerate(boxes):
            image[channel, y1:y2, x1:x2] += 2.0
    images[1, :, 144:, :] = 0
    images[1, :, :, 200:] = 0
    return images, [(160, 224), (144, 200)]


def test_same_proposals_and_detections_when_the_last_level_does_not_tile_the_input(cached, odd_grid_images):
    """torchvision's anchor strides are the input side // the feature side at each level
    (anchors.stride_from_size): 56 px, not 64, across the stride-64 level here. With the 320
    model's 150 proposals per level and image, anchors of the wrong stride changed which ones
    were kept (issue #32)."""
    name, config, reference = cached
    ours = build_model(scratch_model_config(config), num_classes=90)
    load_weights(ours, f"torchvision:{name}")
    assert_same_fpn_inference(ours, reference, *odd_grid_images, min_proposals=100, min_detections=20)


def test_same_losses_as_torchvision_when_every_candidate_is_sampled(cached, two_images):
    """Train mode: BatchNorm (from scratch) normalises with batch statistics in the backbone."""
    name, config, cached_reference = cached
    reference = copy.deepcopy(cached_reference)
    settings = {**EVERY_CANDIDATE, "rpn.pre_nms_top_n_train": 150, "rpn.post_nms_top_n_train": 300}
    ours = build_model(scratch_model_config(config, **settings), num_classes=90)
    load_weights(ours, f"torchvision:{name}")
    sample_every_candidate(reference, top_n=(150, 300))
    assert all(p.requires_grad for p in reference.parameters()) and all(p.requires_grad for p in ours.parameters())
    assert_same_training_losses(ours, reference, *two_images)


@pytest.mark.parametrize("frozen_stages, trainable_layers", [(0, 6), (3, 3), (5, 1), (6, 0)])
def test_frozen_stages_are_torchvisions_trainable_backbone_layers(frozen_stages, trainable_layers):
    cfg = scratch_model_config("mobilenet_v3_large_fpn", **{"backbone.frozen_stages": frozen_stages})
    ours = build_model(cfg, num_classes=2)
    theirs = _mobilenet_extractor(mobilenet_v3_large(norm_layer=nn.BatchNorm2d), True, trainable_layers)
    trainable = sorted(name for name, p in ours.backbone.named_parameters() if p.requires_grad)
    assert trainable == sorted(name for name, p in theirs.named_parameters() if p.requires_grad)


def test_checkpoint_holds_the_coco_layout_and_detects_as_torchvision_does(cached, two_images):
    name, config, reference = cached
    checkpoint = load_checkpoint(f"torchvision:{name}")
    categories = DETECTORS[name][1].meta["categories"]
    assert checkpoint.class_names == categories[1:] and checkpoint.category_ids == list(range(1, 91))
    model_cfg, dataset_cfg = checkpoint.config["model"], checkpoint.config["dataset"]
    assert model_cfg["backbone"]["name"] == "mobilenet_v3_large" and model_cfg["backbone"]["norm"] == "frozen_bn"
    assert model_cfg["backbone"]["weights"] is None and model_cfg["rpn"]["score_thresh"] == 0.05
    test_size = 320 if "_320_" in name else 800
    assert dataset_cfg["test_min_size"] == test_size and dataset_cfg["max_size"] == {320: 640, 800: 1333}[test_size]
    model = model_from_checkpoint(checkpoint)  # every tensor loads (strict)
    images, sizes, _ = two_images
    with torch.no_grad():
        ours, theirs = model(images, sizes), reference(unpadded(images, sizes))
    assert_same_detections(ours, theirs, min_count=20)


def test_a_mobilenet_checkpoint_for_a_resnet_model_names_the_backbone(cached):
    name, _, _ = cached
    resnet = OmegaConf.merge(OmegaConf.structured(ModelConfig), group_option("model", "resnet50_fpn"))
    resnet.backbone.depth, resnet.backbone.weights = 18, None
    message = r"it holds a mobilenet_v3_large backbone, this model's is resnet \(model.backbone.name\)"
    with pytest.raises(CheckpointMismatchError, match=message):
        model_from_checkpoint(load_checkpoint(f"torchvision:{name}"), resnet)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_offline_errors_name_the_url_and_the_file_to_place(name, tmp_path, monkeypatch):
    url = DETECTORS[name][1].url
    assert_offline_errors_name_the_url_and_the_file(
        name, url, offline_torch_home(tmp_path, monkeypatch) / Path(url).name
    )


def test_reference_composition_of_a_mobilenet_model_detects_alike(two_images):
    """torchvision_detector(model) composes the MobileNet parts too (the training-parity benchmark's reference)."""
    torch.manual_seed(0)
    cfg = scratch_model_config("mobilenet_v3_large_fpn", fpn_channels=32, **{"roi_head.mlp_dim": 64})
    ours = build_model(cfg, num_classes=2)
    trained_like_batchnorm(ours)
    images, sizes, _ = two_images
    assert_composed_reference_detects_alike(ours, cfg, images, sizes)


def test_320_model_differs_only_in_its_test_time_proposals():
    fpn, small = (
        OmegaConf.merge(OmegaConf.structured(ModelConfig), group_option("model", name))
        for name in ("mobilenet_v3_large_fpn", "mobilenet_v3_large_320_fpn")
    )
    assert (small.rpn.pre_nms_top_n_test, small.rpn.post_nms_top_n_test) == (150, 150)
    small.rpn.pre_nms_top_n_test, small.rpn.post_nms_top_n_test = (
        fpn.rpn.pre_nms_top_n_test,
        fpn.rpn.post_nms_top_n_test,
    )
    assert small == fpn


def test_finetune_experiment_starts_from_the_coco_detector():
    cfg, r50 = compose_train("experiment=finetune_mobilenet_v3_large_fpn"), compose_train("experiment=finetune_r50_fpn")
    assert cfg.model.weights == "torchvision:fasterrcnn_mobilenet_v3_large_fpn" and cfg.model.backbone.weights is None
    assert cfg.model.backbone.name == "mobilenet_v3_large" and cfg.model.backbone.norm == "frozen_bn"
    assert cfg.model.backbone.frozen_stages == 3 and cfg.model.anchors.level_sizes == "same"
    assert max(cfg.dataset.min_size) <= min(r50.dataset.min_size) and cfg.train.max_iters < r50.train.max_iters
    assert cfg.optimizer == r50.optimizer and cfg.train.batch_size == r50.train.batch_size
    model = build_model(cfg.model, num_classes=2)
    trainable = {
        int(name.split(".")[1]) for name, p in model.backbone.named_parameters() if p.requires_grad and "body" in name
    }
    assert min(trainable) == 7  # blocks 0..6 (stages 1..3) frozen


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("backbone.norm", "gn", "backbone.norm must be one of"),
        ("backbone.name", "mobilenet_v2", "model.backbone.name must be one of"),
        ("anchors.level_sizes", "halving", "model.anchors.level_sizes must be one of"),
        ("anchors.stride", 4, r"model.anchors.stride must be 32 \(the first pyramid level's stride\)"),
        ("backbone.frozen_stages", 7, r"backbone.frozen_stages must be in 0..6"),
    ],
)
def test_bad_mobilenet_settings_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        build_model(scratch_model_config("mobilenet_v3_large_fpn", **{key: value}), num_classes=2)


def test_c4_takes_a_resnet_only():
    cfg = OmegaConf.structured(ModelConfig)
    cfg.backbone.name, cfg.backbone.weights = "mobilenet_v3_large", None
    with pytest.raises(ValueError, match="model.backbone.name must be resnet for c4"):
        build_model(cfg, num_classes=2)
