import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.models import FasterRCNN, ModelConfig, build_model
from frcnn.models.backbone import build_resnet, frozen_stage_count
from frcnn.models.config import BackboneConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
MODEL_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*_c4.yaml"))  # FPN: test_model_fpn.py


@dataclass
class _ModelRoot:
    model: ModelConfig = field(default_factory=ModelConfig)


ConfigStore.instance().store(name="_test_model_root", node=_ModelRoot)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_config_files_compose_against_the_schema(name):
    with initialize_config_dir(str(CONFIG_DIR), version_base=None):
        cfg = compose("_test_model_root", overrides=[f"+model={name}", "model.backbone.weights=null"])
    depth = int(name.removeprefix("resnet").removesuffix("_c4"))
    assert cfg.model.backbone.depth == depth
    assert list(cfg.model.anchors.scales) == [8.0, 16.0, 32.0]
    assert cfg.model.roi_head.roi_size == 14 and cfg.model.roi_head.pooler == "roi_pool"
    if depth in (18, 50):  # building the others only repeats these
        model = build_model(cfg.model, num_classes=3)
        assert model.roi_head.score.out_features == 4 and model.roi_head.cls_loc.out_features == 16
        assert model.roi_head.score.in_features == (512 if depth == 18 else 2048)


def test_training_losses_are_finite_and_reach_exactly_the_trainable_parameters(two_images, tiny_model_config):
    torch.manual_seed(0)
    cfg = tiny_model_config()
    cfg.backbone.frozen_stages = 2  # conv1 + layer1
    model = build_model(cfg, num_classes=2).train()
    frozen_bn = model.backbone.bn1
    running_mean = frozen_bn.running_mean.clone()
    images, sizes, targets = two_images
    losses = model(images, sizes, targets)
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc"}
    assert all(v.ndim == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        frozen = name.startswith(("backbone.conv1.", "backbone.bn1.", "backbone.layer1."))
        assert parameter.requires_grad != frozen, name
        if frozen:
            assert parameter.grad is None, name
        else:  # zero-initialised residual branches get exactly-zero gradients at first: reached is enough
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    for head in (model.rpn.head, model.roi_head.score, model.roi_head.cls_loc):
        assert all(p.grad.abs().sum() > 0 for p in head.parameters())
    assert model.roi_head.box_head.layer4[-1].bn2.weight.grad.abs().sum() > 0
    assert not frozen_bn.training and torch.equal(frozen_bn.running_mean, running_mean)


def test_images_without_objects_give_zero_box_losses(two_images, tiny_model_config):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(), num_classes=2).train()
    images, sizes, _ = two_images
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = model(images, torch.tensor(sizes), empty)
    assert losses["rpn_loc"].item() == 0.0 and losses["roi_loc"].item() == 0.0
    assert torch.isfinite(losses["rpn_cls"]) and losses["rpn_cls"] > 0
    assert torch.isfinite(losses["roi_cls"]) and losses["roi_cls"] > 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_train_mode_requires_targets(two_images, tiny_model_config):
    model = build_model(tiny_model_config(), num_classes=2).train()
    images, sizes, _ = two_images
    with pytest.raises(ValueError, match="targets"):
        model(images, sizes)


def test_eval_detections_shapes_order_and_bounds(two_images, tiny_model_config):
    torch.manual_seed(0)
    cfg = tiny_model_config()
    cfg.roi_head.score_thresh = 0.0  # an untrained model: keep everything to check the format
    cfg.roi_head.detections_per_image = 7
    model = build_model(cfg, num_classes=3).eval()
    images, sizes, _ = two_images
    with torch.no_grad():
        detections = model(images, sizes)
    assert len(detections) == 2
    for (height, width), det in zip(sizes, detections):
        assert set(det) == {"boxes", "scores", "labels"}
        count = len(det["scores"])
        assert 0 < count <= 7
        assert det["boxes"].shape == (count, 4) and det["labels"].shape == (count,)
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 1 and det["labels"].max() <= 3
        assert (det["scores"][:-1] >= det["scores"][1:]).all()
        boxes = det["boxes"]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()


def test_a_few_optimisation_steps_drive_the_loss_down(two_images, tiny_model_config):
    torch.manual_seed(0)
    cfg = tiny_model_config(pooler="roi_align")
    cfg.backbone.frozen_stages = 4  # the whole trunk: keeps the test fast on a CPU (gradients are tested above)
    model = build_model(cfg, num_classes=2).train()
    images, sizes, targets = two_images
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    totals = []
    for _ in range(6):
        loss = sum(model(images, sizes, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert sum(totals[-2:]) / 2 < 0.75 * totals[0], totals


def test_channels_last_gives_the_same_losses(two_images, tiny_model_config):
    images, sizes, targets = two_images
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        cfg = tiny_model_config()
        cfg.backbone.channels_last = channels_last
        model = build_model(cfg, num_classes=2).train()
        torch.manual_seed(1)  # identical sampling in both runs
        results.append(model(images, sizes, targets))
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-4, atol=1e-5)


def test_backbone_loads_a_local_state_dict(tmp_path, tiny_model_config):
    reference = torchvision.models.resnet18()
    with torch.no_grad():
        reference.layer3[0].conv1.weight.normal_()
        reference.bn1.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    cfg = tiny_model_config()
    cfg.backbone.weights = str(path)
    model = build_model(cfg, num_classes=2)
    assert torch.equal(model.backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert torch.equal(model.roi_head.box_head.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    # With weights the norm layers default to frozen BatchNorm holding the file's statistics.
    assert isinstance(model.backbone.bn1, FrozenBatchNorm2d)
    assert torch.equal(model.backbone.bn1.running_var, reference.bn1.running_var)


@pytest.mark.parametrize(
    ("weights", "frozen_stages", "expected"), [("imagenet", None, 2), (None, None, 0), (None, 1, 1)]
)
def test_frozen_stages_default_to_two_with_weights_and_none_from_scratch(weights, frozen_stages, expected, caplog):
    cfg = BackboneConfig(depth=18, weights=weights, frozen_stages=frozen_stages)
    with caplog.at_level("INFO", logger="frcnn.models.backbone"):
        assert frozen_stage_count(cfg) == expected
    if weights is None and frozen_stages is None:  # training from scratch is said
        assert "trains from scratch" in caplog.text


@pytest.mark.parametrize("detector_weights", [None, "detector.pth"])
def test_frozen_random_stages_are_warned_of_unless_detector_weights_load_over_them(detector_weights, caplog):
    # model.weights is loaded after the build (frcnn.models.weights); the build only reads it.
    cfg = ModelConfig(backbone=BackboneConfig(depth=18, weights=None, frozen_stages=1), weights=detector_weights)
    with caplog.at_level("WARNING", logger="frcnn.models.faster_rcnn"):
        build_model(cfg, num_classes=2)
    assert ("freezes randomly initialised" in caplog.text) == (detector_weights is None)


def test_backbone_weights_errors_name_the_file_and_the_reason(tmp_path):
    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), wrong)
    with pytest.raises(ValueError, match=r"resnet34\.pth.*resnet18.*unexpected keys \['layer1\.2"):
        build_resnet(18, str(wrong))
    mismatched = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), mismatched)
    with pytest.raises(ValueError, match=r"resnet50\.pth.*does not fit resnet18"):
        build_resnet(18, str(mismatched))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth.*cannot be read"):
        build_resnet(18, str(garbage))
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        build_resnet(18, os.fspath(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    ("norm", "weights", "expected"),
    [
        ("auto", None, nn.BatchNorm2d),
        ("auto", "file", FrozenBatchNorm2d),
        ("bn", "file", nn.BatchNorm2d),
        ("gn", None, nn.GroupNorm),
        ("frozen_bn", None, FrozenBatchNorm2d),
    ],
)
def test_norm_options(tmp_path, norm, weights, expected):
    if weights == "file":
        weights = str(tmp_path / "resnet18.pth")
        torch.save(torchvision.models.resnet18().state_dict(), weights)
    net = build_resnet(18, weights, norm)
    assert isinstance(net.bn1, expected) and isinstance(net.layer4[0].bn2, expected)


def test_group_norm_refuses_batch_norm_weights():
    with pytest.raises(ValueError, match="gn"):
        build_resnet(18, "imagenet", "gn")


def test_model_is_a_faster_rcnn_and_deep_copies(tiny_model_config):
    model = build_model(tiny_model_config(), num_classes=2)
    assert isinstance(model, FasterRCNN)
    twin = copy.deepcopy(model)
    assert twin.load_state_dict(model.state_dict()).missing_keys == []


def test_checkpoints_naming_layer4_res5_still_load(tiny_model_config):
    torch.manual_seed(0)
    source = build_model(tiny_model_config(), num_classes=2)
    old_names = {k.replace("roi_head.box_head.layer4.", "roi_head.res5."): v for k, v in source.state_dict().items()}
    assert any(k.startswith("roi_head.res5.") for k in old_names)
    target = build_model(tiny_model_config(), num_classes=2)
    target.load_state_dict(old_names)  # strict: every key maps
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name
