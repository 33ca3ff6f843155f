"""Faster R-CNN (ResNet C4) model: ``build_model(cfg.model, num_classes)`` and its parts."""

from frcnn.models.config import ModelConfig
from frcnn.models.faster_rcnn import FasterRCNN, build_model

__all__ = ["FasterRCNN", "ModelConfig", "build_model"]
