"""Whole-detector weights: a checkpoint or state-dict file, or a torchvision detector.

``load_weights(model, source)`` (also what ``model.weights=`` in a config does): ``source`` is
a file (an frcnn checkpoint, whose ``"model"`` entry is used, or a bare state dict) or
``torchvision:<model name>`` (torchvision's weights API, e.g. the COCO-trained
``torchvision:fasterrcnn_resnet50_fpn``, downloaded to the torch cache on first use). A
torchvision detector's state dict is renamed key by key onto this model (:func:`from_torchvision`).
Tensors whose shape differs (the predictor, for another class count) keep their fresh
initialisation: that is the fine-tuning path. The report names them.

The file is read here, not through :mod:`frcnn.checkpoint`: models sit below checkpoints in the
layers, and a weights file need not be a checkpoint (a bare state dict, torchvision's). Of the
checkpoint format only its ``model`` entry is read, with ``torch.load(weights_only=True)`` as
the checkpoint reader does.
"""

import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision:"


# torchvision detector key prefix -> frcnn key prefix (the rest of the key is the same).
_TORCHVISION_RENAMES = (
    ("rpn.head.conv.0.0.", "rpn.head.conv."),
    ("rpn.head.cls_logits.", "rpn.head.objectness."),
    ("rpn.head.bbox_pred.", "rpn.head.deltas."),
    ("roi_heads.box_head.", "roi_head.box_head."),
    ("roi_heads.box_predictor.cls_score.", "roi_head.score."),
    ("roi_heads.box_predictor.bbox_pred.", "roi_head.cls_loc."),
)


def from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ``FasterRCNN`` (ResNet-FPN) state dict with frcnn's key names."""
    renamed = {}
    for key, value in state.items():
        for theirs, ours in _TORCHVISION_RENAMES:
            if key.startswith(theirs):
                key = ours + key[len(theirs) :]
                break
        renamed[key] = value
    return renamed


def torchvision_state_dict(name: str) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """The default weights of torchvision detector ``name`` and their class names."""
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as error:
        raise ValueError(f"model.weights={TORCHVISION_PREFIX}{name}: torchvision has no model {name!r}") from error
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except OSError as error:  # URLError is an OSError: offline, DNS, refused
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise RuntimeError(
            f"cannot download {weights.url} ({error}); place that file at {cache}, or pass a local "
            f"state dict with model.weights=/path/to/{Path(weights.url).name}"
        ) from None
    return state, weights.meta.get("categories")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"model.weights={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling or zip error: name the file, keep the cause
        raise RuntimeError(f"model.weights={path}: cannot be read as weights ({error})") from error
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # an frcnn checkpoint
    if not isinstance(state, dict):
        raise RuntimeError(f"model.weights={path}: holds a {type(state).__name__}, not a state dict")
    return state


def load_weights(model: nn.Module, source: str | os.PathLike) -> dict[str, list[str]]:
    """Load ``source`` (a file or ``torchvision:<name>``) into ``model``; return the report
    ``{"mismatched", "missing", "unexpected", "class_names"}`` (``class_names``: the
    torchvision weights' category names, else empty)."""
    source = str(source)
    class_names: list[str] = []
    if source.startswith(TORCHVISION_PREFIX):
        state, categories = torchvision_state_dict(source[len(TORCHVISION_PREFIX) :])
        class_names = list(categories or [])
    else:
        state = _read_state_dict(Path(os.path.expanduser(source)))
    if any(key.startswith(("roi_heads.", "backbone.body.")) for key in state) and "roi_head.score.weight" not in state:
        state = from_torchvision(state)
    own = model.state_dict()
    mismatched = [
        f"{k}: weights {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    compatible = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    result = model.load_state_dict(compatible, strict=False)
    report = {
        "mismatched": mismatched,
        "missing": [k for k in result.missing_keys if k not in state],
        "unexpected": [k for k in state if k not in own],
        "class_names": class_names,
    }
    log.info("loaded %d/%d tensors from %s", len(compatible), len(own), source)
    reasons = {
        "mismatched": "shape differs, left at initialisation",
        "missing": "not in the weights, left at initialisation",
        "unexpected": "not in the model, ignored",
    }
    for kind, reason in reasons.items():
        if report[kind]:
            log.warning("%d tensors %s:\n  %s", len(report[kind]), reason, "\n  ".join(report[kind]))
    return report
