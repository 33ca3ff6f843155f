"""The lowest ONNX opset a detector's exported graph loads and runs correctly with in ONNX Runtime.

Measured by exporting each model of the test variants (C4 with RoIPool, RoIAlign and RoIAlign
with ``aligned=true``, a hoisted ResNet-50 C4 head, ResNet-FPN v1 and v2, MobileNetV3-FPN and its
320 one) at opsets 9 to 20 and running the file in ONNX Runtime against the PyTorch model
(torch 2.14, onnxruntime 1.32):

- below 11 the exporter fails (in a traceback of the whole graph): the RPN's top-k ranks its scores
  with ``CumSum`` (:mod:`frcnn.models.topk`), an opset-11 operator;
- at 11 the export succeeds and passes ``onnx.checker``, but ONNX Runtime refuses to load the
  file: the detection count (:mod:`frcnn.models.postprocess`) is clamped with ``Clip`` on int64,
  which opset 12 allows;
- from 12 every model's graph runs and equals the PyTorch model, except a C4 RoIAlign head with
  ``aligned=true``: torchvision exports its half-pixel offset as RoiAlign's
  ``coordinate_transformation_mode``, an opset-16 attribute, and below 16 it writes the unaligned
  RoiAlign with only a warning (other boxes and detections). The FPN's multi-level RoIAlign pools
  unaligned whatever ``roi_head.aligned`` says (as torchvision's ``MultiScaleRoIAlign``), so 12
  is its minimum.
"""

from __future__ import annotations

from torch import nn

from frcnn.models.config import Architecture, ModelConfig, Pooler
from frcnn.models.poolers import RoIPooler

INTEGER_CLIP = 12  # every graph: Clip of int64 tensors (opset 11's CumSum is needed too)
ALIGNED_ROI_ALIGN = 16  # RoiAlign's coordinate_transformation_mode (half_pixel: aligned=true)


def _requirement(model: ModelConfig | nn.Module) -> tuple[int, str]:
    """The minimum opset of ``model``'s graph (a model config, or the built model) and why."""
    if isinstance(model, nn.Module):
        aligned = any(isinstance(m, RoIPooler) and m.kind == Pooler.roi_align and m.aligned for m in model.modules())
    else:
        roi = model.roi_head
        aligned = model.architecture == Architecture.c4 and roi.pooler == Pooler.roi_align and roi.aligned
    if aligned:
        return ALIGNED_ROI_ALIGN, "RoIAlign with aligned=true"
    return INTEGER_CLIP, "Clip of integer tensors"


def minimum_opset(model: ModelConfig | nn.Module) -> int:
    """The lowest ONNX opset whose export of ``model`` (its config, or the built detector) ONNX
    Runtime loads and runs as the PyTorch model: 16 for a C4 RoIAlign head with ``aligned=true``,
    12 otherwise (the module docstring says why)."""
    return _requirement(model)[0]


def check_opset(opset: int, model: ModelConfig | nn.Module) -> None:
    """Raise ValueError, in one line naming ``opset``, the value and the minimum, when ``opset`` is
    below :func:`minimum_opset` of ``model``."""
    minimum, reason = _requirement(model)
    if opset < minimum:
        raise ValueError(
            f"opset={opset} is below what this model's graph needs ({minimum}: {reason}); use opset>={minimum}"
        )
