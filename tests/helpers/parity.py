"""Comparison helpers of the parity tests (frcnn vs torchvision's detector), and the models and
settings they compare."""

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from frcnn.bench.reference import LOSS_NAMES, torchvision_detector
from frcnn.config import group_option
from frcnn.models import ModelConfig, build_model, load_weights
from frcnn.models.weights import from_torchvision
from frcnn.utils.settings import plain

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
# Our overrides under which every anchor and RoI candidate is sampled (no random draw left to differ);
# the reference gets the same by :func:`sample_every_candidate`.
EVERY_CANDIDATE = {"rpn.batch_size_per_image": 100_000, "roi_head.batch_size_per_image": 100_000}
PREDICTOR_KEYS = ["roi_head.cls_loc.bias", "roi_head.cls_loc.weight", "roi_head.score.bias", "roi_head.score.weight"]


def scratch_model_config(name: str, **overrides) -> DictConfig:
    """configs/model/``name``.yaml on the schema, from scratch (no backbone download, every stage
    trained: torchvision's detectors from scratch train every stage too), then ``overrides``
    (dotted keys)."""
    # Plain values (no schema): an override may hold a value the schema refuses, which build_model names.
    cfg = OmegaConf.create(plain(OmegaConf.merge(ModelConfig, group_option("model", name))))
    cfg.backbone.weights, cfg.backbone.frozen_stages = None, 0
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@torch.no_grad()
def trained_like_batchnorm(model: nn.Module) -> None:
    """BatchNorm statistics and scales as trained weights have, in place (at initialisation they
    are 0 and 1, under which a mistaken statistic or scale would go unseen)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.1, 0.1)


def sample_every_candidate(reference, top_n: tuple[int, int] | None = None) -> None:
    """torchvision's ``reference`` samples every anchor and RoI candidate in training, as frcnn
    under :data:`EVERY_CANDIDATE`; ``top_n``: its (pre-, post-) NMS proposal counts in training."""
    reference.rpn.fg_bg_sampler.batch_size_per_image = 100_000
    reference.roi_heads.fg_bg_sampler.batch_size_per_image = 100_000
    if top_n is not None:
        reference.rpn._pre_nms_top_n["training"], reference.rpn._post_nms_top_n["training"] = top_n


def assert_torchvision_weights_load_key_by_key(config: DictConfig, name: str, reference, categories, file: Path):
    """``torchvision:<name>`` (its cached ``file``) loads into frcnn's model of ``config`` for its
    90 classes with every tensor equal to ``reference``'s, and the class names are ``categories``;
    for 2 classes (the fine-tuning path, from the local file) only the predictor is re-initialised."""
    ours = build_model(config, num_classes=90)
    report = load_weights(ours, f"torchvision:{name}")
    assert report["mismatched"] == [] and report["missing"] == [] and report["unexpected"] == []
    assert report["class_names"] == categories
    theirs = from_torchvision(reference.state_dict())
    assert all(torch.equal(value, theirs[key]) for key, value in ours.state_dict().items())
    report = load_weights(build_model(config, num_classes=2), file)
    assert sorted(k.split(":")[0] for k in report["mismatched"]) == PREDICTOR_KEYS
    assert report["missing"] == report["unexpected"] == []


def unpadded(images: torch.Tensor, sizes) -> list[torch.Tensor]:
    """The images of a padded batch ``[B, 3, H, W]`` cut to their ``(h, w)``: torchvision's input."""
    return [image[:, :h, :w] for image, (h, w) in zip(images, sizes)]


def assert_same_sets(ours: torch.Tensor, theirs: torch.Tensor, atol: float, what: str) -> None:
    """Rows of ``ours [N, D]`` and ``theirs [N, D]`` pair up one to one within ``atol``
    (compared as sets: a near-tie may swap two rows' order)."""
    assert ours.shape == theirs.shape, f"{what}: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    distance = (ours[:, None, :] - theirs[None, :, :]).abs().amax(dim=2)  # (N, N)
    unmatched = torch.ones(len(theirs), dtype=torch.bool)
    for row in range(len(ours)):
        candidates = torch.nonzero((distance[row] <= atol) & unmatched).flatten()
        assert len(candidates) > 0, f"{what}: row {ours[row].tolist()} has no counterpart within {atol}"
        unmatched[candidates[0]] = False


def assert_same_proposals(proposals, their_proposals: list[torch.Tensor], min_count: int) -> None:
    """frcnn's padded ``Proposals`` equal torchvision's per-image boxes to 1e-3 px."""
    for i, theirs in enumerate(their_proposals):
        mine = proposals.boxes[i][proposals.valid[i]]
        assert len(mine) >= min_count
        assert_same_sets(mine, theirs, 1e-3, f"image {i} proposals")


def assert_same_detections(detections: list[dict], their_detections: list[dict], min_count: int) -> None:
    """Per image the same labels, boxes to 1e-3 px and scores to 1e-5."""
    for i, (mine, theirs) in enumerate(zip(detections, their_detections)):
        assert len(mine["boxes"]) >= min_count
        # Scores scaled by 100 so that one tolerance (1e-3) checks them to 1e-5; labels by 1000.
        rows = [
            torch.cat([d["boxes"], 100 * d["scores"][:, None], 1000 * d["labels"][:, None].float()], dim=1)
            for d in (mine, theirs)
        ]
        assert_same_sets(rows[0], rows[1], 1e-3, f"image {i} detections")


def assert_same_training_losses(ours, reference, images: torch.Tensor, sizes, targets: list[dict]) -> None:
    """frcnn's and torchvision's detector give the same, positive, training losses (1e-5) on the
    padded batch ``images`` of unpadded ``sizes`` (torchvision gets the unpadded images)."""
    ours.train(), reference.train()
    losses = ours(images, sizes, targets)
    their_losses = reference(unpadded(images, sizes), [dict(t) for t in targets])
    for ours_name, their_name in LOSS_NAMES.items():
        assert losses[ours_name] > 0
        torch.testing.assert_close(losses[ours_name], their_losses[their_name], rtol=0, atol=1e-5, msg=ours_name)


def assert_same_fpn_inference(ours, reference, images: torch.Tensor, sizes, min_proposals: int, min_detections: int):
    """Eval mode, ours (an FPN detector) against torchvision's ``reference`` on the same weights:
    the same pyramid features (exactly), proposals and detections (:func:`assert_same_proposals`,
    :func:`assert_same_detections`)."""
    ours.eval(), reference.eval()
    with torch.inference_mode():
        features = ours.backbone(images)
        their_features = reference.backbone(images)
        for mine, theirs in zip(features, their_features.values()):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
        proposals, _ = ours.rpn(features, torch.tensor(sizes))
        image_list, _ = reference.transform(unpadded(images, sizes))
        their_proposals, _ = reference.rpn(image_list, their_features)
        detections = ours(images, sizes)
        their_detections = reference(unpadded(images, sizes))
    assert_same_proposals(proposals, their_proposals, min_count=min_proposals)
    assert_same_detections(detections, their_detections, min_count=min_detections)


def assert_composed_reference_detects_alike(ours, cfg, images: torch.Tensor, sizes) -> None:
    """torchvision's detector composed from ``ours`` (built from the model config ``cfg``) by
    :func:`torchvision_detector`, the training-parity benchmark's reference, detects as ``ours``."""
    reference = torchvision_detector(ours.eval(), cfg).eval()
    with torch.inference_mode():
        detections, theirs = ours(images, sizes), reference(unpadded(images, sizes))
    assert_same_detections(detections, theirs, min_count=1)
