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

from frcnn.models.backbone import WeightsUnavailableError

log = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision:"


# torchvision detector key prefix -> frcnn key prefix (the rest of the key is the same).
_TORCHVISION_RENAMES = (
    ("rpn.head.cls_logits.", "rpn.head.objectness."),
    ("rpn.head.bbox_pred.", "rpn.head.deltas."),
    ("roi_heads.box_head.", "roi_head.box_head."),
    ("roi_heads.box_predictor.cls_score.", "roi_head.score."),
    ("roi_heads.box_predictor.bbox_pred.", "roi_head.cls_loc."),
)
# A one-conv RPN head is a bare conv here; a deeper one (conv_depth=2, fasterrcnn_resnet50_fpn_v2)
# keeps torchvision's names, rpn.head.conv.<i>.0.*.
_ONE_CONV_RPN_RENAME = ("rpn.head.conv.0.0.", "rpn.head.conv.")


def from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ``FasterRCNN`` (ResNet-FPN, v1 or v2) state dict with frcnn's key names."""
    renames = _TORCHVISION_RENAMES
    if "rpn.head.conv.1.0.weight" not in state:
        renames = (_ONE_CONV_RPN_RENAME, *renames)
    renamed = {}
    for key, value in state.items():
        for theirs, ours in renames:
            if key.startswith(theirs):
                key = ours + key[len(theirs) :]
                break
        renamed[key] = value
    return renamed


def torchvision_state_dict(name: str, key: str = "checkpoint") -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """The default weights of torchvision detector ``name`` and their class names, from the torch
    cache (downloaded there on first use). ``key`` is the setting that named them
    (``checkpoint`` or ``model.weights``): the errors name it, and the way out that it allows.

    Offline, :class:`WeightsUnavailableError` names the URL and the exact file to place; a cached
    file that cannot be read (truncated, planted, wrong hash) raises ValueError naming it.
    """
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as error:
        raise ValueError(f"{key}={TORCHVISION_PREFIX}{name}: torchvision has no model {name!r}") from error
    file = Path(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints" / file
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except OSError as error:  # URLError is an OSError: offline, DNS, refused
        local = f", or fine-tune from a local copy: model.weights=/path/to/{file}" if key == "model.weights" else ""
        raise WeightsUnavailableError(
            f"{key}={TORCHVISION_PREFIX}{name}: cannot download {weights.url} ({getattr(error, 'reason', error)}); "
            f"download that file elsewhere and place it at {cache}{local}"
        ) from None
    except Exception as error:  # noqa: BLE001 (the cached file: truncated, corrupt, failed hash, not weights)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"{key}={TORCHVISION_PREFIX}{name}: the cached file {cache} cannot be read ({reason}); "
            f"delete it to download it again"
        ) from None
    return state, weights.meta.get("categories")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"model.weights={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (any unpickling or zip error: name the file, keep the cause)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"model.weights={path}: cannot be read as weights ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # an frcnn checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"model.weights={path}: holds a {type(state).__name__}, not a state dict")
    return state


def load_weights(model: nn.Module, source: str | os.PathLike) -> dict[str, list[str]]:
    """Load ``source`` (a file or ``torchvision:<name>``) into ``model``; return the report
    ``{"mismatched", "missing", "unexpected", "class_names"}`` (``class_names``: the
    torchvision weights' category names, else empty)."""
    source = str(source)
    class_names: list[str] = []
    if source.startswith(TORCHVISION_PREFIX):
        state, categories = torchvision_state_dict(source[len(TORCHVISION_PREFIX) :], key="model.weights")
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
