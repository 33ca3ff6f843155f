"""The detector of a training checkpoint, rebuilt for inference."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from frcnn.models import FasterRCNN, build_model
from frcnn.models.checkpoint_fit import load_checkpoint_weights

logger = logging.getLogger(__name__)


def model_from_checkpoint(checkpoint: dict, model_cfg: DictConfig, source: str = "the checkpoint") -> FasterRCNN:
    """Build ``model_cfg``'s detector for the checkpoint's classes and load its weights (eval mode).

    The backbone's initial weights (e.g. ``imagenet``) are not fetched again, since the checkpoint
    replaces them; its norm layers are the ones the run trained with (``norm: auto`` resolved
    as the training run resolved it). Weights that do not fit (a ``model.*`` override of another
    depth) raise an error naming ``source`` and the reason.
    """
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg))
    backbone = model_cfg.backbone
    if backbone.norm == "auto":
        backbone.norm = "bn" if backbone.weights is None else "frozen_bn"
    backbone.weights = None
    model = build_model(model_cfg, num_classes=len(checkpoint["class_names"]))
    load_checkpoint_weights(model, checkpoint, source, model_cfg, len(checkpoint["class_names"]))
    logger.info(
        "loaded a %d-class detector trained for %s iterations", len(checkpoint["class_names"]), checkpoint.get("iteration")
    )
    return model.eval()


def check_classes(checkpoint: dict, class_names: list[str]) -> None:
    """Raise ValueError when the dataset's class list is not the one the model was trained on."""
    if list(checkpoint["class_names"]) != list(class_names):
        raise ValueError(
            f"the checkpoint's classes {list(checkpoint['class_names'])} differ from the dataset's {list(class_names)}"
        )
