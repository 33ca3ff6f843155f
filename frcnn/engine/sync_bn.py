"""``train.sync_bn``: BatchNorm statistics over the whole batch of all processes.

Under DDP each process normalises its images with the statistics of its own batch (a detector
holds 1 or 2 images per GPU: noisy statistics), and DDP copies rank 0's running statistics to the
others at each step. :class:`torch.nn.SyncBatchNorm` gathers the statistics of every process in
each training forward instead. Only trainable BatchNorm (``norm: bn``, e.g. a backbone trained
from scratch) is converted: :class:`torchvision.ops.FrozenBatchNorm2d` (the default with ImageNet
weights) has no batch statistics and is left as it is. Checkpoints keep the same keys either way.

PyTorch's SyncBatchNorm runs on GPUs only (its statistics kernels, ``batch_norm_stats`` and the
rest, have no CPU implementation, and its forward refuses CPU tensors): a CPU run of several
processes (gloo) with ``train.sync_bn`` stops before training, saying so.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from frcnn.utils.dist import get_world_size

log = logging.getLogger(__name__)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` (on ``device``) with its trainable BatchNorm layers replaced by
    :class:`torch.nn.SyncBatchNorm` (the same parameter and buffer tensors: an optimiser built
    before or after sees the same ones), to be wrapped in DDP next. One process, or no trainable
    BatchNorm: ``model`` as it is, saying so in the log. Raises ValueError for several processes
    on the CPU."""
    trainable = sum(isinstance(m, _BatchNorm) for m in model.modules())
    world_size = get_world_size()
    if world_size == 1:
        log.info("train.sync_bn: a single process, nothing to synchronise: BatchNorm left as it is")
        return model
    if trainable == 0:
        log.info("train.sync_bn: the model has no trainable BatchNorm (frozen BatchNorm is not synchronised)")
        return model
    if device.type == "cpu":
        raise ValueError(
            f"train.sync_bn=true: PyTorch's SyncBatchNorm runs on GPUs only, and these {world_size} processes "
            "train on the CPU; drop train.sync_bn (each process then normalises with its own batch's statistics)"
        )
    log.info("train.sync_bn: %d BatchNorm layers synchronised over %d processes", trainable, world_size)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
