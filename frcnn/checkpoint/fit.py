"""Loading a checkpoint's weights into a detector, with one line saying why they do not fit.

``load_state_dict`` reports a mismatch as hundreds of key names; the usual causes are a
checkpoint of another backbone (name or depth), architecture or class count, and the checkpoint's own
config and class list tell which.
"""

from __future__ import annotations

from typing import Optional

from omegaconf.errors import OmegaConfBaseException
from torch import nn

from frcnn.checkpoint.format import Checkpoint
from frcnn.checkpoint.saved_config import saved_model_config
from frcnn.models.config import BackboneName, ModelConfig


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model they are loaded into."""


def mismatch_reason(
    model: nn.Module,
    checkpoint: Checkpoint,
    model_cfg: Optional[ModelConfig] = None,
    num_classes: Optional[int] = None,
) -> Optional[str]:
    """Why ``checkpoint.model`` does not fit ``model`` (None when it does).

    ``model_cfg`` (the model's config node) and ``num_classes`` (its class count) let the reason
    name the key that differs: the backbone name or depth, the architecture or the class count.
    """
    own, theirs = model.state_dict(), checkpoint.model
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    mismatched = [k for k in own if k in theirs and tuple(own[k].shape) != tuple(theirs[k].shape)]
    if not (missing or unexpected or mismatched):
        return None
    saved = _saved_model(checkpoint)
    if model_cfg is not None and saved is not None:
        if saved.architecture != model_cfg.architecture:
            return (
                f"it holds a {saved.architecture} detector, this model is {model_cfg.architecture} (model.architecture)"
            )
        name, own_name = saved.backbone.name, model_cfg.backbone.name
        if name != own_name:
            return f"it holds a {name} backbone, this model's is {own_name} (model.backbone.name)"
        depth, own_depth = saved.backbone.depth, model_cfg.backbone.depth
        if name == BackboneName.resnet and depth != own_depth:
            return f"it holds a ResNet-{depth} backbone, this model is ResNet-{own_depth} (model.backbone.depth)"
    if num_classes is not None and len(checkpoint.class_names) != num_classes:
        return (
            f"it was trained on {len(checkpoint.class_names)} classes, this model has {num_classes} "
            f"(the dataset's class list)"
        )
    parts = []
    if mismatched:
        k = mismatched[0]
        parts.append(
            f"{len(mismatched)} tensors differ in shape (first: {k} {tuple(theirs[k].shape)} in the "
            f"checkpoint, {tuple(own[k].shape)} in the model)"
        )
    if missing:
        parts.append(f"{len(missing)} model tensors are not in it (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} of its tensors are not in the model (first: {unexpected[0]})")
    return "; ".join(parts)


def _saved_model(checkpoint: Checkpoint) -> Optional[ModelConfig]:
    """The checkpoint's model config, typed; None when it has none or it no longer fits the
    schema (the reason then comes from the tensors alone)."""
    if not checkpoint.config.get("model"):
        return None
    try:
        return saved_model_config(checkpoint.config)
    except (ValueError, OmegaConfBaseException):
        return None


def load_checkpoint_weights(
    model: nn.Module,
    checkpoint: Checkpoint,
    source: str,
    model_cfg: Optional[ModelConfig] = None,
    num_classes: Optional[int] = None,
) -> None:
    """``model.load_state_dict(checkpoint.model)``, raising :class:`CheckpointMismatchError`
    ``"<source> does not fit this model: <reason>"`` (one line) when it does not fit."""
    reason = mismatch_reason(model, checkpoint, model_cfg, num_classes)
    if reason is not None:
        raise CheckpointMismatchError(f"{source} does not fit this model: {reason}")
    model.load_state_dict(checkpoint.model)
