"""The detector of a checkpoint, rebuilt for inference."""

from __future__ import annotations

import logging
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from frcnn.checkpoint.fit import load_checkpoint_weights
from frcnn.checkpoint.format import Checkpoint
from frcnn.checkpoint.saved_config import saved_model_config
from frcnn.models import FasterRCNN, build_model

logger = logging.getLogger(__name__)


def model_from_checkpoint(
    checkpoint: Checkpoint, model_cfg: Optional[DictConfig] = None, source: str = "the checkpoint"
) -> FasterRCNN:
    """Build the checkpoint's detector for its classes and load its weights (eval mode): the
    exponential moving average of the weights when the run kept one (``train.ema_decay``), else
    the weights themselves.

    ``model_cfg``: the model config node (default: the checkpoint's own; a command passes it with
    the command line's ``model.*`` overrides applied). The backbone's initial weights (e.g.
    ``imagenet``) are not fetched again, since the checkpoint replaces them; its norm layers are
    the ones the run trained with (``norm: auto`` resolved as the training run resolved it).
    Weights that do not fit (a ``model.*`` override of another depth) raise an error naming
    ``source`` and the reason.
    """
    if model_cfg is None:
        model_cfg = saved_model_config(checkpoint.config)
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg))
    backbone = model_cfg.backbone
    if backbone.norm == "auto":
        backbone.norm = "bn" if backbone.weights is None else "frozen_bn"
    backbone.weights = None
    num_classes = len(checkpoint.class_names)
    model = build_model(model_cfg, num_classes=num_classes)
    load_checkpoint_weights(model, checkpoint.for_inference(), source, model_cfg, num_classes)
    logger.info(
        "loaded a %d-class detector trained for %s iterations%s",
        num_classes,
        checkpoint.iteration,
        f" (its EMA weights, {checkpoint.ema.updates} updates)" if checkpoint.ema is not None else "",
    )
    return model.eval()
