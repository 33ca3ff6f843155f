"""Divergence never poisons a checkpoint: non-finite losses, gradients, weights and RoIs stop the
run (or drop the update) before anything is saved, a checkpoint becomes last.pt only once its
weights have taken a finite step, and a resumed run takes its config's learning rate."""

import json
import logging
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from frcnn.checkpoint.io import load_checkpoint, save_checkpoint
from frcnn.engine.divergence import (
    DivergenceError,
    DivergenceGuard,
    NonFiniteLossError,
    check_weights,
    nonfinite_tensors,
)
from frcnn.engine.trainer import train
from frcnn.models import FasterRCNN
from frcnn.models.finite import NonFiniteBoxError
from tests.helpers.checkpoints import stand_in_checkpoint
from tests.helpers.faults import forward_with, nan_rpn_loc

LOSS_TERMS = ["rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"]


def records(run_dir: Path) -> dict[int, dict]:
    lines = (run_dir / "losses.jsonl").read_text().splitlines()
    return {r["iteration"]: r for r in map(json.loads, lines) if "loss/total" in r}


def all_finite(path: Path) -> bool:
    return nonfinite_tensors(load_checkpoint(path).to_dict()) == []


@pytest.mark.slow
def test_huge_learning_rate_stops_before_saving_and_resumes_with_a_sane_one(tiny_cfg, tmp_path):
    """``optimizer.base_lr=1e6``: the run used to segfault in roi_align or save NaN weights."""
    diverging = (
        "optimizer.base_lr=1e6",
        "train.max_iters=12",
        "train.checkpoint_period=1",
        "train.eval_at_end=false",
        "train.keep_checkpoints=0",
    )  # last.pt only: fewer writes (the command's own run is in tests/api)
    with pytest.raises(DivergenceError) as info:
        train(tiny_cfg(*diverging), tmp_path)
    message = str(info.value)
    assert "\n" not in message and "training diverged" in message and "grad_norm=" in message
    assert all(f"{k}=" in message for k in LOSS_TERMS)
    stopped_at = int(message.split(" at iteration ")[1].split(":")[0])
    ckpts = tmp_path / "checkpoints"
    assert not list(ckpts.glob(".*.tmp"))  # the discarded state left no file
    for path in ckpts.glob("*.pt"):
        assert all_finite(path), path
    # The first update already ruins the weights: its step spikes, so no checkpoint of them is kept.
    if (ckpts / "last.pt").exists():
        last = load_checkpoint(ckpts / "last.pt")
        assert f"(iteration {last.iteration}) is the last checkpoint" in message and last.iteration < stopped_at
        start = last.iteration
    else:
        assert "no checkpoint was written (the one of iteration" in message
        start = 0
    saved = records(tmp_path)
    assert all(math.isfinite(r["grad_norm"]) for i, r in saved.items() if i < stopped_at)

    # A sane learning rate continues from what was kept (here: from the start): its weights take finite steps.
    resume = (*diverging[1:], "train.resume=auto", "train.resume_allow_config_change=true")
    train(tiny_cfg(*resume, f"train.max_iters={start + 2}"), tmp_path)
    resumed = load_checkpoint(ckpts / "last.pt")
    assert resumed.iteration == start + 2 and nonfinite_tensors(resumed.to_dict()) == []


def test_a_resumed_run_takes_the_learning_rate_of_its_config(tiny_cfg):
    """The optimiser and scheduler states carry the old learning rate; a resume with a saner
    ``optimizer.base_lr`` used to keep the diverging one."""
    from frcnn.engine.optim import build_lr_scheduler, restore_schedule_position

    cfg = tiny_cfg()
    model = nn.Linear(2, 2)

    def build(base_lr):
        optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=0.9)
        return optimizer, build_lr_scheduler(cfg.schedule, optimizer, 10)

    optimizer, scheduler = build(1e5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()
    optimizer, scheduler = build(0.01)
    factor = scheduler.lr_lambdas[0](3)
    optimizer.load_state_dict(saved_optimizer)
    restore_schedule_position(scheduler, saved_scheduler)
    assert scheduler.last_epoch == 3 and 0 < factor <= 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * factor) == scheduler.get_last_lr()[0]
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * scheduler.lr_lambdas[0](4))


def test_grad_norm_is_logged_every_step_before_clipping(tiny_cfg, tmp_path):
    train(tiny_cfg("train.max_iters=2", "train.eval_at_end=false", "train.clip_grad_norm=0.001"), tmp_path)
    norms = [r["grad_norm"] for r in records(tmp_path).values()]
    assert len(norms) == 2 and all(n > 0.001 for n in norms)  # the norm measured, not the clipped one


def _nan_gradient(model, losses):
    # A finite loss (sqrt(0) = 0) whose gradient is NaN (0 * 1 / (2 sqrt(0))).
    weight = model.roi_head.score.weight
    losses["roi_cls"] = losses["roi_cls"] + (weight * 0).sum().sqrt()
    return losses


def test_nonfinite_gradient_with_a_finite_loss_stops(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(FasterRCNN, "forward", forward_with(_nan_gradient, {3}))
    with pytest.raises(
        DivergenceError,
        match=r"non-finite gradient at iteration 3: .*grad_norm=nan.*/last.pt "
        r"\(iteration 1\) is the last checkpoint \(the one of iteration 2 was "
        r"discarded",
    ):
        train(tiny_cfg("train.checkpoint_period=1", "train.eval_at_end=false"), tmp_path)
    # Iteration 2's weights gave non-finite gradients: their checkpoint never became last.pt.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").iteration == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "model_0000001.pt"]


def test_skip_drops_updates_and_stops_after_too_many_in_a_row(tiny_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(FasterRCNN, "forward", forward_with(nan_rpn_loc, {2, 4}))
    skip = ("train.on_nonfinite=skip", "train.eval_at_end=false", "train.max_iters=5", "train.checkpoint_period=5")
    with caplog.at_level(logging.WARNING):
        train(tiny_cfg(*skip), tmp_path / "skip")
    assert "2 updates dropped" in caplog.text
    assert load_checkpoint(tmp_path / "skip" / "checkpoints" / "last.pt").iteration == 5
    assert all_finite(tmp_path / "skip" / "checkpoints" / "last.pt")

    monkeypatch.setattr(FasterRCNN, "forward", forward_with(_nan_gradient, {2, 3}))
    with pytest.raises(DivergenceError, match=r"2 steps in a row dropped \(train.max_nonfinite_steps=2\)"):
        train(tiny_cfg(*skip, "train.max_nonfinite_steps=2"), tmp_path / "stop")


def test_nonfinite_rois_in_the_forward_pass_stop_the_run_by_name(tiny_cfg, tmp_path, monkeypatch):
    def boxes_overflowed(model, losses):
        raise NonFiniteBoxError("3 of 50 RoIs have a non-finite coordinate")

    monkeypatch.setattr(FasterRCNN, "forward", forward_with(boxes_overflowed, {2}))
    with pytest.raises(NonFiniteLossError, match=r"iteration 2: .*\(3 of 50 RoIs have a non-finite coordinate\)"):
        train(tiny_cfg("train.eval_at_end=false"), tmp_path)


def test_weights_made_nonfinite_by_the_update_are_named():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    check_weights(1, {"total": 1.0}, 1.0, model, optimizer)  # finite: no error
    with torch.no_grad():
        model.bias[0] = math.inf
    with pytest.raises(DivergenceError, match=r"iteration 3: total=2; grad_norm=5 made model.bias non-finite"):
        check_weights(3, {"total": 2.0}, 5.0, model, optimizer)


def test_a_checkpoint_with_nonfinite_tensors_is_never_written(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(stand_in_checkpoint(1), path)
    poisoned = stand_in_checkpoint(2, weight=math.nan, resumable=True)
    poisoned.training.optimizer["state"] = {0: {"momentum_buffer": torch.tensor([1.0, math.inf])}}
    with pytest.raises(
        DivergenceError,
        match=r"refusing to write .*last.pt: non-finite values in model.w, "
        r"optimizer.state.0.momentum_buffer$",
    ):
        save_checkpoint(poisoned, path)
    assert load_checkpoint(path).iteration == 1 and os.listdir(tmp_path) == ["last.pt"]


def test_nonfinite_tensors_names_exactly_the_nonfinite_ones():
    """Huge but finite values whose sum overflows (fp16, float32) are not reported; NaN and inf are,
    in any floating or complex dtype, at any depth of the state."""
    big16 = torch.full((100,), 60000.0, dtype=torch.float16)  # sum 6e6: overflows fp16, finite in float32
    big32 = torch.full((4,), 3e38)  # the float32 sum overflows
    nan = torch.ones(3, 3)
    nan[1, 2] = torch.nan
    inf_complex = torch.ones(2, dtype=torch.complex64)
    inf_complex[1] = complex(1.0, float("inf"))
    state = {
        "model": {"a": big16, "b": big32, "c": nan, "steps": torch.tensor([1, 2])},
        "optimizer": {"state": [{"exp_avg": inf_complex}, {"exp_avg": torch.zeros(2)}]},
    }
    assert nonfinite_tensors(state) == ["model.c", "optimizer.state.0.exp_avg"]


def test_a_spike_is_measured_against_the_median_of_the_in_range_steps():
    guard = DivergenceGuard("stop", 5, spike_factor=20, spike_steps=2)
    assert guard.spike(1e9, 1e9) is None  # nothing to compare with yet
    for loss, norm in [(2.0, 5.0), (1.0, 4.0), (1.5, 100.0)]:  # one high norm moves the median little
        guard.finite(loss, norm)
    assert guard.spike(29.0, 99.0) is None  # 19.3x the loss median 1.5, 19.8x the norm median 5
    assert "total loss 31 is 20.7 times its median 1.5 over the last 3 steps" in guard.spike(31.0, 5.0)
    assert "grad_norm 101 is 20.2 times its median 5" in guard.spike(1.0, 101.0)
    guard.spiked(DivergenceError("spike"))  # a first spike is counted
    guard.finite(1.0, 5.0)  # a step back in range ends the run of spikes
    guard.spiked(DivergenceError("spike"))
    with pytest.raises(DivergenceError, match=r"^spike; 2 steps in a row \(train.divergence_steps\)$"):
        guard.spiked(DivergenceError("spike"))
    assert guard.total_spikes == 3
    assert DivergenceGuard("stop", 5, spike_factor=None).spike(1e30, 1e30) is None  # the test is off


def _exploded(model, losses):
    """Finite losses a million times their size (the gradients follow)."""
    return {name: value * 1e6 for name, value in losses.items()}


@pytest.mark.slow
def test_a_finite_explosion_stops_the_run_and_keeps_the_checkpoint_before_it(tiny_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(FasterRCNN, "forward", forward_with(_exploded, {4, 5, 6}))
    cfg = tiny_cfg("train.checkpoint_period=1", "train.eval_at_end=false", "train.max_iters=8")
    with caplog.at_level(logging.WARNING), pytest.raises(DivergenceError) as info:
        train(cfg, tmp_path)
    message = str(info.value)
    assert "iteration 6" in message and "times its median" in message and "3 steps in a row" in message
    assert "iteration 4: update dropped: total loss" in caplog.text
    assert "(1 of train.divergence_steps=3 in a row)" in caplog.text
    # Iteration 3's weights gave the first spike: the last checkpoint is the one whose step stayed in range.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").iteration == 2
    assert "(iteration 2) is the last checkpoint" in message

    monkeypatch.setattr(FasterRCNN, "forward", forward_with(_exploded, {4}))  # one hard batch: a warning only
    with caplog.at_level(logging.WARNING):
        train(tiny_cfg("train.eval_at_end=false", "train.max_iters=6"), tmp_path / "one")
    assert load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt").iteration == 6
    assert "1 updates dropped as spikes" in caplog.text
