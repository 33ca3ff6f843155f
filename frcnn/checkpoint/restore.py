"""The detector of a checkpoint, rebuilt for inference: :func:`open_for_inference`, what evaluate,
predict, export and :class:`frcnn.Detector` all open a checkpoint with."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from frcnn.checkpoint.fit import load_checkpoint_weights
from frcnn.checkpoint.format import Checkpoint
from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.saved_config import saved_dataset_config, saved_model_config
from frcnn.data.config import DatasetConfig
from frcnn.models import FasterRCNN, build_model
from frcnn.models.config import ModelConfig, Norm

logger = logging.getLogger(__name__)


def model_from_checkpoint(
    checkpoint: Checkpoint, model_cfg: Optional[ModelConfig] = None, source: str = "the checkpoint"
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
    model_cfg = copy.deepcopy(model_cfg if model_cfg is not None else saved_model_config(checkpoint.config))
    backbone = model_cfg.backbone
    if backbone.norm == Norm.auto:
        backbone.norm = Norm.bn if backbone.weights is None else Norm.frozen_bn
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


def saved_configs(saved: Mapping[str, Any]) -> tuple[DatasetConfig, ModelConfig]:
    """A saved config's own ``dataset`` and ``model`` nodes, typed."""
    return saved_dataset_config(saved), saved_model_config(saved)


@dataclass
class InferenceCheckpoint:
    """A checkpoint opened for inference: its detector (eval mode; the EMA weights when the run
    kept them) and the typed ``dataset``/``model`` configs it runs with (overrides applied)."""

    checkpoint: Checkpoint
    model: FasterRCNN
    dataset_cfg: DatasetConfig
    model_cfg: ModelConfig


def open_for_inference(
    path: str | os.PathLike,
    configs: Callable[[Mapping[str, Any]], tuple[DatasetConfig, ModelConfig]] = saved_configs,
) -> InferenceCheckpoint:
    """Read the checkpoint at ``path`` and rebuild its detector for inference.

    ``configs(saved_config)``: the ``(dataset, model)`` configs to run with, from the checkpoint's
    saved config; by default its own (:func:`saved_configs`); a command passes its overrides
    applied on top (:func:`frcnn.checkpoint.saved_config.checkpoint_run_config`). Raises the
    one-line errors of :func:`load_checkpoint` and :func:`model_from_checkpoint`, naming ``path``.
    """
    checkpoint = load_checkpoint(path)
    dataset_cfg, model_cfg = configs(checkpoint.config)
    model = model_from_checkpoint(checkpoint, model_cfg, source=str(path))
    return InferenceCheckpoint(checkpoint, model, dataset_cfg, model_cfg)
