"""Optimiser and learning-rate schedule from the ``optimizer`` and ``schedule`` config nodes."""

import logging
import math
from typing import Any

import torch
from torch import nn

from frcnn.config.schema import OptimizerName, ScheduleName

log = logging.getLogger(__name__)

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def scaled_lr(base_lr: float, reference_batch_size: int, total_batch_size: int) -> float:
    """Linear scaling rule: the LR grows with the images per step (all processes together)."""
    return base_lr * total_batch_size / reference_batch_size


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed group and one without weight decay.

    Biases and the affine weights of normalisation layers get no weight decay: decaying them
    only pulls the layers' output scale and offset towards zero.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias" or isinstance(module, _NORM_TYPES):
                no_decay.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg, model: nn.Module, total_batch_size: int) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over ``model``'s trainable parameters.

    ``cfg`` is the ``optimizer`` node; ``total_batch_size`` is images per step over all processes.
    """
    lr = scaled_lr(cfg.base_lr, cfg.reference_batch_size, total_batch_size)
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.name == OptimizerName.sgd:
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas))
    log.info(
        "%s: lr %.6g (base_lr %g x %d images / %d), weight decay %g on %d tensors, none on %d",
        cfg.name,
        lr,
        cfg.base_lr,
        total_batch_size,
        cfg.reference_batch_size,
        cfg.weight_decay,
        len(groups[0]["params"]),
        len(groups[1]["params"]),
    )
    return optimizer


class WarmupSchedule:
    """LR multiplier per iteration: linear warmup, then multi-step or cosine decay.

    ``factor(it)`` for ``it < warmup_iters`` rises linearly from ``warmup_factor`` to 1 and
    multiplies the decay curve, so the two join without a jump.
    """

    def __init__(
        self,
        name: ScheduleName,
        max_iters: int,
        warmup_iters: int,
        warmup_factor: float,
        steps: list[int],
        gamma: float,
        min_lr_factor: float,
    ):
        if list(steps) != sorted(steps):
            raise ValueError(f"schedule.steps={list(steps)} must be increasing")
        self.name = str(name)  # plain: the scheduler's state_dict holds it, and checkpoints load weights_only
        self.max_iters = max_iters
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.steps = list(steps)
        self.gamma = gamma
        self.min_lr_factor = min_lr_factor

    def decay(self, it: int) -> float:
        if self.name == ScheduleName.multistep:
            return self.gamma ** sum(it >= s for s in self.steps)
        progress = min(it / max(self.max_iters, 1), 1.0)
        return self.min_lr_factor + (1 - self.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def warmup(self, it: int) -> float:
        if it >= self.warmup_iters:
            return 1.0
        alpha = it / self.warmup_iters
        return self.warmup_factor * (1 - alpha) + alpha

    def __call__(self, it: int) -> float:
        return self.warmup(it) * self.decay(it)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer, max_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration scheduler (call ``step()`` once per iteration) from the ``schedule`` node."""
    schedule = WarmupSchedule(
        cfg.name,
        max_iters,
        cfg.warmup_iters,
        cfg.warmup_factor,
        list(cfg.steps),
        cfg.gamma,
        cfg.min_lr_factor,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def restore_schedule_position(scheduler: torch.optim.lr_scheduler.LambdaLR, saved: dict) -> None:
    """Continue ``scheduler`` from a checkpoint's scheduler state ``saved``.

    Only the position (the iteration) is restored; the learning rates follow the current config
    (call after loading the optimiser state, which carries the old ones): a resumed run may change
    ``optimizer.base_lr`` or the schedule, e.g. to a saner learning rate after a divergence.
    """
    position = saved["last_epoch"]
    rates = [base_lr * factor(position) for base_lr, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, base_lr, rate in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, rates):
        group["initial_lr"], group["lr"] = base_lr, rate
    scheduler.load_state_dict(
        {
            **saved,
            "base_lrs": list(scheduler.base_lrs),
            "_last_lr": rates,
            "lr_lambdas": [None] * len(scheduler.lr_lambdas),
        }
    )
