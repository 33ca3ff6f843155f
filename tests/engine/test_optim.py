"""Optimiser parameter groups, LR scaling and the warmup + decay schedules."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from frcnn.config import OptimizerConfig, ScheduleConfig
from frcnn.engine.optim import WarmupSchedule, build_lr_scheduler, build_optimizer


def _model():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False), nn.GroupNorm(2, 4))
    m[2].weight.requires_grad_(False)  # frozen parameters are not optimised
    return m


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_no_weight_decay_on_norm_and_bias(name):
    model = _model()
    cfg = OmegaConf.structured(OptimizerConfig(name=name, base_lr=0.02, reference_batch_size=16, weight_decay=1e-4))
    opt = build_optimizer(cfg, model, total_batch_size=4)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0].weight)}
    assert ids(no_decay["params"]) == ids(
        [model[0].bias, model[1].weight, model[1].bias, model[3].weight, model[3].bias]
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)  # 0.02 * 4 / 16
    assert isinstance(opt, torch.optim.SGD if name == "sgd" else torch.optim.AdamW)


def test_multistep_with_warmup():
    s = WarmupSchedule(
        "multistep", max_iters=100, warmup_iters=10, warmup_factor=0.1, steps=[50, 80], gamma=0.1, min_lr_factor=0.0
    )
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    assert [s(i) for i in (10, 49, 50, 79, 80, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_reaches_min_lr():
    s = WarmupSchedule(
        "cosine", max_iters=100, warmup_iters=0, warmup_factor=1.0, steps=[], gamma=0.1, min_lr_factor=0.05
    )
    assert s(0) == pytest.approx(1.0)
    assert s(50) == pytest.approx(0.05 + 0.95 * 0.5)
    assert s(100) == pytest.approx(0.05)
    assert all(s(i) >= s(i + 1) for i in range(100))


def test_scheduler_steps_per_iteration():
    model = nn.Linear(2, 2)
    opt = build_optimizer(
        OmegaConf.structured(OptimizerConfig(base_lr=0.1, reference_batch_size=1)), model, total_batch_size=1
    )
    sched = build_lr_scheduler(
        OmegaConf.structured(ScheduleConfig(name="cosine", warmup_iters=2, warmup_factor=0.5)), opt, max_iters=10
    )
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    cos = lambda i: 0.5 * (1 + math.cos(math.pi * i / 10))  # noqa: E731
    assert lrs[:3] == pytest.approx([0.1 * 0.5 * cos(0), 0.1 * 0.75 * cos(1), 0.1 * cos(2)])
    assert lrs[-1] == pytest.approx(0.1 * cos(9))


def test_steps_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        WarmupSchedule("multistep", 10, 0, 1.0, [8, 4], 0.1, 0.0)
