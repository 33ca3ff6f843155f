"""``train.ema_decay``: an exponential moving average (EMA) of the detector's weights.

The average is :class:`torch.optim.swa_utils.AveragedModel` with torch's EMA update
(:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`) over the parameters and the buffers
(``use_buffers=True``: trainable BatchNorm's running statistics are averaged like the weights;
frozen BatchNorm's buffers are constants, and their average is themselves). It is updated after
every optimiser step that changed the weights (a dropped update leaves it as it is), evaluated
beside the raw weights, saved in checkpoints, and it is what inference loads from a checkpoint
that holds one (:meth:`frcnn.checkpoint.format.Checkpoint.for_inference`).

Warm-up of the decay (YOLOv5's, chosen over timm's ``1 - (1 + t)^-power`` for having one knob in
iterations): the ``t``-th update uses ``decay * (1 - exp(-t / warmup))``. Early on, the weights
change fast and the random initialisation should not linger in the average: the first updates
follow the model almost fully, and the decay reaches 95% of ``decay`` after ``3 * warmup``
updates (the span of the average, ``1 / (1 - decay_t)`` updates, grows more slowly: half its full
length after ``warmup * ln(decay / (1 - decay))`` updates). ``warmup`` 0: the full decay from the
second update on (AveragedModel's first update always copies the weights).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from frcnn.checkpoint.format import Checkpoint, EmaWeights

log = logging.getLogger(__name__)


def ema_decay_at(update: int, decay: float, warmup: int) -> float:
    """The decay the ``update``-th update (counted from 1) uses: ``decay * (1 - exp(-update / warmup))``,
    or ``decay`` for ``warmup`` 0."""
    return decay if warmup == 0 else decay * -math.expm1(-update / warmup)


def build_ema(model: nn.Module, decay: float, warmup: int) -> AveragedModel:
    """An EMA of ``model``'s parameters and buffers (see the module docstring), on its device and in
    eval mode (it is only evaluated), starting from its current weights; its
    ``update_parameters(model)`` takes one update."""

    def warmed_up(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        # The count is read from ``ema`` itself, kept on the CPU: ``updates`` is its copy on the
        # weights' device, and reading a GPU tensor would wait for the GPU at every step. It counts
        # the updates so far (>= 1 here: AveragedModel's first update copies the weights).
        get_ema_multi_avg_fn(ema_decay_at(int(ema.n_averaged) + 1, decay, warmup))(averaged, current, updates)

    ema = AveragedModel(model, multi_avg_fn=warmed_up, use_buffers=True)
    ema.requires_grad_(False)
    return ema.eval()


def ema_weights(ema: AveragedModel) -> EmaWeights:
    """What a checkpoint keeps of ``ema``: the averaged detector's state dict and the update count."""
    return EmaWeights(model=ema.module.state_dict(), updates=int(ema.n_averaged))


def resume_ema(ema: Optional[AveragedModel], checkpoint: Checkpoint, source: str | os.PathLike) -> None:
    """Continue ``ema`` (None: the resumed run keeps none) from the EMA of the ``checkpoint`` it
    resumes, read from ``source``. From a checkpoint without one (``train.ema_decay`` newly set,
    with ``train.resume_allow_config_change``), a new EMA starts from the resumed weights."""
    if ema is None:
        if checkpoint.ema is not None:
            log.warning("%s holds an EMA of the weights; with train.ema_decay=0 it is dropped", source)
        return
    if checkpoint.ema is None:
        log.warning("%s holds no EMA of the weights: a new one starts from its weights", source)
    weights = checkpoint.ema or EmaWeights(model=checkpoint.model, updates=0)
    ema.module.load_state_dict(weights.model)
    ema.n_averaged.fill_(weights.updates)
