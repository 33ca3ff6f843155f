"""``frcnn.bench.reference``: torchvision's FasterRCNN composed as an frcnn model mirrors it, gives
the same proposals, detections and losses under torchvision's conventions, and takes frcnn's call
contract as :class:`ReferenceDetector`."""

import pytest
import torch
from omegaconf import OmegaConf

from frcnn.bench.reference import (
    LOSS_NAMES,
    TORCHVISION_CONVENTIONS,
    ReferenceDetector,
    build_reference_model,
    torchvision_detector,
)
from frcnn.models import build_model
from tests.helpers.parity import assert_same_detections, assert_same_proposals, assert_same_training_losses, unpadded


def test_torchvision_composition_mirrors_ours_and_runs(tiny_model_config, two_images):
    torch.manual_seed(0)
    cfg = OmegaConf.structured(tiny_model_config(pooler="roi_align"))
    cfg.backbone.frozen_stages = 2
    cfg.backbone.norm = "frozen_bn"
    ours = build_model(cfg, num_classes=2)
    reference = torchvision_detector(ours, cfg)

    def trainable(model):
        return sorted(p.numel() for p in model.parameters() if p.requires_grad)

    assert trainable(reference) == trainable(ours)
    torch.testing.assert_close(reference.roi_heads.box_predictor.bbox_pred.weight, ours.roi_head.cls_loc.weight)
    torch.testing.assert_close(reference.backbone.layer3[0].conv1.weight, ours.backbone.layer3[0].conv1.weight)
    assert reference.rpn.anchor_generator.num_anchors_per_location() == [ours.rpn.anchor_generators[0].num_anchors]
    images, _, targets = two_images
    losses = reference.train()(list(images), targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    with torch.inference_mode():
        detections = reference.eval()(list(images))
    assert all(d["boxes"].shape[1] == 4 for d in detections)
    # Its transform must not resize the inputs: equal image sizes in, no rescaling out.
    transformed, _ = reference.transform(list(images))
    assert transformed.image_sizes == [(128, 128), (128, 128)]


# ---------------------------------------------------------------------------------------------
# Numerical parity: with torchvision's conventions set (TORCHVISION_CONVENTIONS), frcnn and the
# reference give the same proposals, detections and losses from the same weights and input.
# Boxes and scores are compared as sets (a near-tie may swap two entries' order).


def _parity_pair(tiny_model_config, pooler: str, **overrides):
    torch.manual_seed(0)
    cfg = OmegaConf.structured(tiny_model_config(pooler=pooler))
    for key, value in {**TORCHVISION_CONVENTIONS, **overrides}.items():
        OmegaConf.update(cfg, key, value)
    ours = build_model(cfg, num_classes=2)
    # A less uniform classifier than the initialisation's, so that scores and labels vary.
    torch.nn.init.normal_(ours.roi_head.score.weight, std=0.1)
    torch.nn.init.normal_(ours.roi_head.cls_loc.weight, std=0.01)
    torch.nn.init.normal_(ours.rpn.head.deltas.weight, std=0.05)
    return cfg, ours, torchvision_detector(ours, cfg)


@pytest.mark.parametrize("pooler", ["roi_align", "roi_pool"])
def test_same_proposals_and_detections_as_torchvision(tiny_model_config, two_images, pooler):
    cfg, ours, reference = _parity_pair(tiny_model_config, pooler)
    images, sizes, _ = two_images
    ours.eval(), reference.eval()
    with torch.inference_mode():
        features = ours.backbone(images)
        proposals, _ = ours.rpn([features], torch.tensor(sizes))
        image_list, _ = reference.transform(unpadded(images, sizes))
        torch.testing.assert_close(image_list.tensors, images, rtol=0, atol=0)
        their_proposals, _ = reference.rpn(image_list, {"0": features})
        detections = ours(images, sizes)
        their_detections = reference(unpadded(images, sizes))
    assert_same_proposals(proposals, their_proposals, min_count=11)
    assert_same_detections(detections, their_detections, min_count=6)


@pytest.mark.parametrize("pooler", ["roi_align", "roi_pool"])
def test_same_losses_as_torchvision_when_every_candidate_is_sampled(tiny_model_config, two_images, pooler):
    # Sampling sizes above the candidate counts make both samplers take every labelled
    # anchor and RoI, so the losses compare without the samplers' randomness. frcnn pads each
    # image's RoIs to one count (fixed shapes); padding rows would enter layer4's BatchNorm
    # batch statistics, so layer4 keeps fixed statistics here (as with pretrained weights).
    cfg, ours, reference = _parity_pair(
        tiny_model_config,
        pooler,
        **{"rpn.batch_size_per_image": 100_000, "roi_head.batch_size_per_image": 100_000, "backbone.norm": "frozen_bn"},
    )
    assert_same_training_losses(ours, reference, *two_images)


def test_each_convention_changes_the_outcome(tiny_model_config, two_images):
    """Every switch in TORCHVISION_CONVENTIONS matters here: with any one of them back at the
    seed's value, proposals or losses differ from torchvision's."""
    images, sizes, targets = two_images
    seed_values = {
        "anchors.offset": 0.5,
        "anchors.round": False,
        "rpn.boundary_thresh": 0.0,
        "rpn.min_size_after_top_n": False,
        "roi_head.loc_sigma": 1.0,
    }
    assert set(seed_values) == set(TORCHVISION_CONVENTIONS)
    everything = {
        "rpn.batch_size_per_image": 100_000,
        "roi_head.batch_size_per_image": 100_000,
        "backbone.norm": "frozen_bn",
        # Many boxes under min_size and a short top-k, so the order of the two matters.
        "rpn.min_size": 20.0,
        "rpn.pre_nms_top_n_train": 40,
    }
    for key, value in seed_values.items():
        cfg, ours, reference = _parity_pair(tiny_model_config, "roi_align", **everything, **{key: value})
        ours.train(), reference.train()
        losses = ours(images, sizes, targets)
        their_losses = reference(unpadded(images, sizes), [dict(t) for t in targets])
        mine = torch.stack([losses[k] for k in LOSS_NAMES])
        theirs = torch.stack([their_losses[k] for k in LOSS_NAMES.values()])
        assert (mine - theirs).abs().max() > 1e-4, key


def test_the_reference_detector_takes_frcnn_batches_and_starts_from_frcnn_weights(tiny_model_config, two_images):
    """build_reference_model(cfg) from an RNG state has build_model(cfg)'s weights from that state;
    in train mode it returns frcnn's loss names, in eval mode it detects on the unpadded images."""
    cfg = OmegaConf.structured(tiny_model_config(pooler="roi_align"))
    torch.manual_seed(3)
    ours = build_model(cfg, num_classes=2)
    torch.manual_seed(3)
    wrapped = build_reference_model(cfg, num_classes=2)
    assert isinstance(wrapped, ReferenceDetector)
    reference = wrapped.reference
    torch.testing.assert_close(reference.roi_heads.box_predictor.cls_score.weight, ours.roi_head.score.weight)
    torch.testing.assert_close(reference.backbone.conv1.weight, ours.backbone.conv1.weight)
    images, sizes, targets = two_images
    torch.manual_seed(0)
    losses = wrapped.train()(images, sizes, targets)
    torch.manual_seed(0)
    their_losses = reference(unpadded(images, sizes), [dict(t) for t in targets])
    assert list(losses) == list(LOSS_NAMES)
    for ours_name, their_name in LOSS_NAMES.items():
        torch.testing.assert_close(losses[ours_name], their_losses[their_name], msg=ours_name)
    with pytest.raises(ValueError, match="needs targets"):
        wrapped(images, sizes)
    wrapped.eval()
    with torch.inference_mode():
        detections, theirs = wrapped(images, sizes), reference(unpadded(images, sizes))
    for mine, expected in zip(detections, theirs):
        torch.testing.assert_close(mine["boxes"], expected["boxes"])
