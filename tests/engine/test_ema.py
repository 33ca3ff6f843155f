"""train.ema_decay: the EMA of the weights (torch's update, its warm-up, buffers included), in the
checkpoint format, evaluated beside the raw weights in a run (TensorBoard eval_ema/*, best.pt),
resumed exactly, and what inference loads from a checkpoint that holds one."""

import json
import math
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import frcnn
from frcnn.checkpoint.format import CheckpointError, EmaWeights
from frcnn.checkpoint.io import load_checkpoint, save_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.engine.ema import build_ema, ema_decay_at, ema_weights, resume_ema
from frcnn.engine.resume import config_differences
from frcnn.engine.trainer import train
from frcnn.export import exporter
from tests.engine.test_trainer import LOSS_TERMS, read_losses
from tests.helpers.checkpoints import stand_in_checkpoint
from tests.helpers.configs import compose_train


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_decay_warms_up_from_zero_to_its_value():
    assert ema_decay_at(1, 0.999, 0) == 0.999  # no warm-up
    assert ema_decay_at(2000, 0.9, 2000) == pytest.approx(0.9 * (1 - math.exp(-1)))
    decays = [ema_decay_at(t, 0.9998, 2000) for t in (1, 10, 100, 1000, 10000, 100000)]
    assert decays == sorted(decays) and decays[0] < 1e-3 and decays[-1] == pytest.approx(0.9998)


def test_the_average_takes_torchs_update_of_parameters_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.Unflatten(1, (2, 1, 1)), FrozenBatchNorm2d(2))
    model[3].running_mean.fill_(0.5)
    ema = build_ema(model, decay=0.5, warmup=0)
    assert not any(p.requires_grad for p in ema.parameters()) and not ema.training
    expected_weight, expected_mean = None, None
    for update in range(3):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model(torch.randn(4, 3))  # train mode: BatchNorm's running statistics move
        weight, mean = model[0].weight.detach().clone(), model[1].running_mean.clone()
        ema.update_parameters(model)
        # The first update copies the weights; the others mix them in with weight 1 - decay.
        expected_weight = weight if update == 0 else 0.5 * expected_weight + 0.5 * weight
        expected_mean = mean if update == 0 else 0.5 * expected_mean + 0.5 * mean
    assert torch.allclose(ema.module[0].weight, expected_weight)
    assert torch.allclose(ema.module[1].running_mean, expected_mean)  # use_buffers: the statistics follow
    assert torch.equal(ema.module[3].running_mean, model[3].running_mean)  # frozen: constant, kept exactly
    assert ema_weights(ema).updates == 3

    warmed = build_ema(model, decay=0.9, warmup=10)
    before = model[0].weight.detach().clone()
    warmed.update_parameters(model)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    warmed.update_parameters(model)  # the second update: decay 0.9 * (1 - exp(-2 / 10))
    decay = ema_decay_at(2, 0.9, 10)
    assert torch.allclose(warmed.module[0].weight, decay * before + (1 - decay) * model[0].weight)


def test_a_checkpoint_keeps_the_ema_and_inference_takes_it(tmp_path):
    checkpoint = stand_in_checkpoint(5, weight=1.0, resumable=True)
    checkpoint.ema = EmaWeights(model={"w": torch.full((2,), 0.75)}, updates=5)
    save_checkpoint(checkpoint, tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded.ema.updates == 5 and torch.equal(loaded.ema.model["w"], torch.full((2,), 0.75))
    assert loaded.weights_only().ema is loaded.ema  # best.pt keeps it
    assert torch.equal(loaded.for_inference().model["w"], torch.full((2,), 0.75))
    assert torch.equal(loaded.model["w"], torch.full((2,), 1.0))  # the raw weights stay what training resumes
    plain = stand_in_checkpoint(5)
    assert plain.for_inference() is plain and "ema" not in plain.to_dict()  # the layout of old checkpoints

    state = checkpoint.to_dict()
    state["ema"] = {"model": {"w": torch.zeros(2)}}
    with pytest.raises(CheckpointError, match="'ema' entry"):
        type(checkpoint).from_dict(state, "bad.pt")


def test_a_resume_continues_the_checkpoints_ema_or_starts_one(caplog):
    model = nn.Linear(2, 2)
    ema = build_ema(model, decay=0.9, warmup=0)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = {k: v + 1 for k, v in raw.items()}
    checkpoint = replace(stand_in_checkpoint(7), model=raw, ema=EmaWeights(model=averaged, updates=7))
    resume_ema(ema, checkpoint, "last.pt")
    assert _equal_states(ema.module.state_dict(), averaged) and int(ema.n_averaged) == 7

    resume_ema(ema, replace(checkpoint, ema=None), "old.pt")  # train.ema_decay newly set
    assert _equal_states(ema.module.state_dict(), raw) and int(ema.n_averaged) == 0
    assert "old.pt holds no EMA of the weights" in caplog.text
    resume_ema(None, checkpoint, "last.pt")
    assert "with train.ema_decay=0 it is dropped" in caplog.text


def test_a_checkpoint_from_before_the_ema_resumes_without_a_config_change():
    saved = OmegaConf.to_container(compose_train("debug=tiny"), resolve=True, enum_to_str=True)
    for key in ("ema_decay", "ema_warmup_iters", "sync_bn"):
        del saved["train"][key]
    current = OmegaConf.to_container(compose_train("debug=tiny"), resolve=True, enum_to_str=True)
    assert config_differences(saved, current) == []  # keys it lacks are at their defaults
    changed = OmegaConf.to_container(compose_train("debug=tiny", "train.ema_decay=0.9"), enum_to_str=True)
    assert config_differences(saved, changed) == ["train.ema_decay: <absent> -> 0.9"]


EMA = ("train.ema_decay=0.8", "train.ema_warmup_iters=0")


def test_a_run_evaluates_the_ema_beside_the_weights_and_best_pt_follows_it(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg(*EMA, "train.eval_period=3", "train.best_metric=val_loss/total"), tmp_path)

    assert set(metrics) == {"voc07", "voc", "coco", "coco_per_class", "val_loss", "ema"}
    assert set(metrics["ema"]) == {"voc07", "voc", "coco", "coco_per_class", "val_loss"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    ema_val_loss = read_losses(tmp_path, "val_loss_ema")
    assert sorted(ema_val_loss) == [3, 6] and ema_val_loss[6] == [metrics["ema"]["val_loss"][k] for k in LOSS_TERMS]
    assert read_losses(tmp_path, "val_loss")[6] != ema_val_loss[6]  # two models, two numbers

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"eval/voc07_mAP", "eval_ema/voc07_mAP", "eval_ema/coco_AP", "eval_ema_AP/circle"} <= scalars
    assert {"val_loss/total", "val_loss_ema/total"} <= scalars
    assert [e.step for e in events.Scalars("eval_ema/voc07_mAP")] == [3, 6]
    assert events.Scalars("eval_ema/voc07_mAP")[-1].value == pytest.approx(metrics["ema"]["voc07"]["mAP"])

    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last.ema.updates == 6 and not _equal_states(last.ema.model, last.model)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    ema_totals = {iteration: terms[-1] for iteration, terms in ema_val_loss.items()}
    lowest = min(ema_totals, key=ema_totals.get)
    assert (best.iteration, best.best_metric) == (lowest, ema_totals[lowest])  # the EMA's value, not the raw one's
    assert best.training is None and best.ema.updates == lowest
    assert _equal_states(model_from_checkpoint(best).state_dict(), best.ema.model)  # what inference loads


@pytest.mark.slow
def test_an_interrupted_and_resumed_run_has_the_same_ema_as_an_uninterrupted_one(tiny_cfg, tmp_path):
    short = (*EMA, "train.eval_at_end=false", "train.max_iters=4", "schedule=multistep")
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    train(tiny_cfg(*short), straight)
    train(tiny_cfg(*short, "train.max_iters=2"), halves)
    assert load_checkpoint(halves / "checkpoints" / "last.pt").ema.updates == 2
    train(tiny_cfg(*short, "train.resume=auto"), halves)

    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    resumed = load_checkpoint(halves / "checkpoints" / "last.pt")
    assert read_losses(halves) == read_losses(straight)
    assert resumed.ema.updates == expected.ema.updates == 4
    assert _equal_states(resumed.ema.model, expected.ema.model)
    assert _equal_states(resumed.model, expected.model)
    assert not _equal_states(expected.ema.model, expected.model)  # the comparison above can fail


class _Exported(Exception):
    pass


def test_detector_and_export_load_the_ema_weights_and_old_checkpoints_their_own(tiny_checkpoint, tmp_path, monkeypatch):
    path, _ = tiny_checkpoint
    plain = load_checkpoint(path)
    averaged = {k: v + 0.01 if v.is_floating_point() else v for k, v in plain.model.items()}
    save_checkpoint(replace(plain, ema=EmaWeights(model=averaged, updates=3)), tmp_path / "ema.pt")

    assert _equal_states(frcnn.Detector.from_checkpoint(tmp_path / "ema.pt").model.state_dict(), averaged)
    assert _equal_states(frcnn.Detector.from_checkpoint(path).model.state_dict(), plain.model)

    exported = {}

    def graph_of(model):
        exported["state"] = model.state_dict()
        raise _Exported

    monkeypatch.setattr(exporter, "export_graph", graph_of)
    with pytest.raises(_Exported):
        exporter.export_checkpoint(tmp_path / "ema.pt", tmp_path / "exported")
    assert _equal_states(exported["state"], averaged)
