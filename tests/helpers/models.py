"""A tiny ResNet-18 detector config and two 128 px images with objects, for the model tests."""

import pytest
import torch

from frcnn.models import ModelConfig


def _tiny_model_config(**roi_head) -> ModelConfig:
    """ResNet-18 C4 from scratch with anchors, proposal counts and RoI sizes for 128 px images."""
    cfg = ModelConfig()
    cfg.backbone.depth = 18
    cfg.backbone.weights = None
    cfg.backbone.frozen_stages = 0
    cfg.anchors.scales = [1.0, 2.0, 4.0]  # 16, 32, 64 px
    cfg.rpn.conv_channels = 64
    cfg.rpn.pre_nms_top_n_train = 300
    cfg.rpn.post_nms_top_n_train = 60
    cfg.rpn.pre_nms_top_n_test = 200
    cfg.rpn.post_nms_top_n_test = 30
    cfg.rpn.min_size = 4.0
    cfg.rpn.batch_size_per_image = 64
    cfg.roi_head.roi_size = 4
    cfg.roi_head.batch_size_per_image = 16
    for key, value in roi_head.items():
        setattr(cfg.roi_head, key, value)
    return cfg


@pytest.fixture
def tiny_model_config():
    """``tiny_model_config(**roi_head_overrides) -> ModelConfig``: a fresh config per call."""
    return _tiny_model_config


@pytest.fixture
def two_images() -> tuple[torch.Tensor, list[tuple[int, int]], list[dict]]:
    """Two fixed 128x128 images (the second one padded from 112x120) with bright rectangles
    as objects; the targets are those rectangles (labels 1 and 2)."""
    generator = torch.Generator().manual_seed(0)
    images = 0.1 * torch.randn(2, 3, 128, 128, generator=generator)
    boxes = [
        torch.tensor([[16.0, 20.0, 64.0, 84.0], [70.0, 60.0, 120.0, 100.0]]),
        torch.tensor([[30.0, 30.0, 90.0, 80.0]]),
    ]
    labels = [torch.tensor([1, 2]), torch.tensor([2])]
    for image, image_boxes, image_labels in zip(images, boxes, labels):
        for (x1, y1, x2, y2), label in zip(image_boxes.long().tolist(), image_labels.tolist()):
            image[label - 1, y1:y2, x1:x2] += 2.0
    images[1, :, 112:, :] = 0
    images[1, :, :, 120:] = 0
    targets = [{"boxes": b, "labels": c} for b, c in zip(boxes, labels)]
    return images, [(128, 128), (112, 120)], targets
