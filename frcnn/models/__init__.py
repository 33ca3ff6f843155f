"""Faster R-CNN (ResNet C4 or ResNet-FPN): ``build_model(cfg.model, num_classes)``, its parts,
and ``load_weights(model, source)`` for whole-detector weights."""

from frcnn.models.config import ModelConfig
from frcnn.models.faster_rcnn import FasterRCNN, build_model
from frcnn.models.weights import load_weights

__all__ = ["FasterRCNN", "ModelConfig", "build_model", "load_weights"]
