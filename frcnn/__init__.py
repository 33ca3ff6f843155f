"""frcnn: Faster R-CNN (ResNet C4 or ResNet-FPN) training, evaluation, prediction and ONNX export.

    import frcnn
    cfg = frcnn.config.compose(overrides=["dataset=voc"])        # the validated training config
    detector = frcnn.Detector.from_checkpoint("outputs/<run>/checkpoints/last.pt")
    results = detector(["a.jpg", "b.jpg"])                        # boxes, scores, labels, class_names

The package is layered along the data flow; a module imports only from its own layer or a
lower one (checked by ``lint-imports``, contract in pyproject.toml):

    utils -> models, data -> evaluation -> config -> checkpoint -> engine, inference, export -> bench -> cli

Subpackages load on first use: ``from frcnn.models import build_model`` does not load the
training engine, TensorBoard or the COCO tools.
"""

import importlib
from typing import Any

_SUBPACKAGES = (
    "bench",
    "checkpoint",
    "cli",
    "config",
    "data",
    "engine",
    "evaluation",
    "export",
    "inference",
    "models",
    "utils",
)

__all__ = ["Detector", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from frcnn.inference.detector import Detector

        return Detector
    if name in _SUBPACKAGES:
        return importlib.import_module(f"frcnn.{name}")
    raise AttributeError(f"module 'frcnn' has no attribute {name!r}")
