"""Faster R-CNN (ResNet C4 or ResNet-FPN): ``build_model(cfg.model, num_classes)``, its parts,
and ``load_weights(model, source)`` for whole-detector weights.

The parts: backbone (ResNet trunk, FPN), anchors, box coder, matching and sampling, the RPN
(head, anchor targets, losses) and the RoI head (proposal targets, poolers, box heads, losses).
Inference is written once, in fixed-shape form (padded top-k, masked boxes, a validity mask
instead of removed rows), and run alike by eager PyTorch, the ONNX graph and torch.compile:
:mod:`~frcnn.models.proposals` (the proposal layer), :mod:`~frcnn.models.nms`,
:mod:`~frcnn.models.postprocess` (detections), :mod:`~frcnn.models.poolers` and
:mod:`~frcnn.models.topk` (index-ordered top-k, as ONNX's TopK).
"""

from frcnn.models.config import ModelConfig
from frcnn.models.faster_rcnn import FasterRCNN, build_model
from frcnn.models.weights import load_weights

__all__ = ["FasterRCNN", "ModelConfig", "build_model", "load_weights"]
