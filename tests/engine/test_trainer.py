"""The training loop in-process on the tiny shapes set: artifacts, determinism, exact resume,
the non-finite-loss stop, the run folder's one owner, evaluation failures that keep the training,
start-up checks of the test images, and the stop after the current step."""

import json
import math
import os
import shutil
import signal

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

import frcnn.data.dataset
from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.data import DatasetError, build_dataset
from frcnn.data.image_io import read_image_checked
from frcnn.data.validation import Problem
from frcnn.engine import trainer
from frcnn.engine.divergence import NonFiniteLossError
from frcnn.engine.run_folder import LOCK_FILE, RunFolderError, RunFolderLock
from frcnn.engine.trainer import run_training, train
from frcnn.models import FasterRCNN
from tests.helpers.faults import forward_with, nan_rpn_loc

LOSS_TERMS = ["rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"]


def read_losses(run_dir, kind="loss") -> dict[int, list[float]]:
    """iteration -> the training (``kind="loss"``) or validation (``"val_loss"``) loss terms
    recorded in losses.jsonl."""
    lines = [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]
    return {r["iteration"]: [r[f"{kind}/{k}"] for k in LOSS_TERMS] for r in lines if f"{kind}/total" in r}


def test_short_run_writes_checkpoints_tensorboard_and_metrics(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    metrics = train(cfg, tmp_path)

    assert set(metrics) == {"voc07", "voc", "coco", "coco_per_class", "val_loss"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert sorted(read_losses(tmp_path)) == [1, 2, 3, 4, 5, 6]
    assert read_losses(tmp_path, "val_loss") == {6: [metrics["val_loss"][k] for k in LOSS_TERMS]}
    assert metrics["val_loss"]["total"] == pytest.approx(sum(metrics["val_loss"][k] for k in LOSS_TERMS[:-1]))

    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.pt", "last.pt", "model_0000003.pt", "model_0000006.pt"]
    last = load_checkpoint(ckpts / "last.pt")
    assert last.iteration == 6 and last.class_names == ["circle", "square", "triangle"]
    assert last.best_metric == metrics["voc07"]["mAP"] and len(last.training.rng) == 1  # one process
    best = load_checkpoint(ckpts / "best.pt")
    assert set(torch.load(ckpts / "best.pt", weights_only=True)) == {
        "model",
        "iteration",
        "config",
        "class_names",
        "category_ids",
        "best_metric",
        "checksum",
    }
    assert best.iteration == 6 and best.best_metric == metrics["voc07"]["mAP"] and best.training is None
    assert (ckpts / "best.pt").stat().st_size < 0.7 * (ckpts / "last.pt").stat().st_size  # no optimiser state
    assert load_checkpoint(ckpts / "model_0000003.pt").iteration == 3
    # The evaluation scripts rebuild the model from the checkpoint's own config.
    model = model_from_checkpoint(last)
    assert all(torch.equal(value, last.model[name]) for name, value in model.state_dict().items())

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {f"loss/{k}" for k in LOSS_TERMS} | {
        "lr",
        "time/iter",
        "time/data",
        "eval/voc07_mAP",
        "eval/coco_AP",
        "eval_AP/circle",
    } <= scalars
    assert [e.step for e in events.Scalars("loss/total")] == [1, 2, 3, 4, 5, 6]
    val_total = metrics["val_loss"]["total"]
    assert [(e.step, e.value) for e in events.Scalars("val_loss/total")] == [(6, pytest.approx(val_total))]
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for chart in layout.category[0].chart}
    assert charts == {k: [f"loss/{k}", f"val_loss/{k}"] for k in LOSS_TERMS}  # one chart per term, both curves
    assert {"predictions/0", "predictions/1", "analysis/confusion_matrix"} <= set(events.Tags()["images"])
    assert any(tag.startswith("pr/") for tag in events.Tags()["tensors"])
    assert {f"analysis/{k}" for k in ("cls", "loc", "both", "dupe", "bkg", "miss", "fp", "fn")} <= scalars
    confusion = events.Images("analysis/confusion_matrix")[0]
    assert confusion.step == 6 and confusion.width > 100


@pytest.mark.slow
def test_same_seed_same_losses_and_resume_reproduces_them(tiny_cfg, tmp_path):
    # The "interrupted" half runs with max_iters=2: a multi-step schedule keeps its LR independent
    # of max_iters (a cosine one would decay to 0 at iteration 2 and differ from the straight run).
    short = ("train.eval_at_end=false", "train.max_iters=4", "schedule=multistep")
    straight, again, halves = tmp_path / "straight", tmp_path / "again", tmp_path / "halves"
    train(tiny_cfg(*short), straight)
    train(tiny_cfg(*short), again)
    assert read_losses(straight) == read_losses(again)  # deterministic on the CPU

    train(tiny_cfg(*short, "train.max_iters=2"), halves)
    assert load_checkpoint(halves / "checkpoints" / "last.pt").iteration == 2
    train(tiny_cfg(*short, "train.resume=auto"), halves)
    assert read_losses(halves) == read_losses(straight)  # iterations 1-2, then 3-4 after resuming

    # Resuming from an earlier checkpoint of the same run replaces what came after it.
    redo = tmp_path / "redo"
    train(tiny_cfg(*short, "train.checkpoint_period=2"), redo)
    train(tiny_cfg(*short, f"train.resume={redo / 'checkpoints' / 'model_0000002.pt'}"), redo)
    assert read_losses(redo) == read_losses(straight)
    assert [json.loads(line)["iteration"] for line in (redo / "losses.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    # A different seed gives a different run (so the comparisons above can fail).
    train(tiny_cfg(*short, "seed=1", "train.max_iters=1"), tmp_path / "other")
    assert read_losses(tmp_path / "other")[1] != read_losses(straight)[1]


@pytest.mark.slow
def test_best_checkpoint_follows_the_chosen_metric_and_is_not_resumable(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg("train.eval_period=2", "train.best_metric=val_loss/total"), tmp_path)
    val_totals = {iteration: terms[-1] for iteration, terms in read_losses(tmp_path, "val_loss").items()}
    assert sorted(val_totals) == [2, 4, 6] and val_totals[6] == metrics["val_loss"]["total"]
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    lowest = min(val_totals, key=val_totals.get)
    assert (best.iteration, best.best_metric) == (lowest, val_totals[lowest])  # lower is better
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").best_metric == val_totals[lowest]
    with pytest.raises(ValueError, match="weights only"):
        train(tiny_cfg(f"train.resume={tmp_path / 'checkpoints' / 'best.pt'}"), tmp_path / "resumed")

    plain = train(tiny_cfg("train.val_loss=false", "train.max_iters=1"), tmp_path / "plain")
    assert "val_loss" not in plain and read_losses(tmp_path / "plain", "val_loss") == {}


def test_trainer_cleans_temporaries_at_start(tiny_cfg, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.pt.a1b2c3.tmp").write_bytes(b"\0" * 100)
    train(tiny_cfg("train.max_iters=1", "train.eval_at_end=false"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]


def test_non_finite_loss_stops_with_every_term_named(tiny_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(FasterRCNN, "forward", forward_with(nan_rpn_loc, {5}))
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_cfg(), tmp_path)
    message = str(info.value)
    assert "iteration 5" in message and "rpn_loc=nan" in message
    assert all(f"{k}=" in message for k in LOSS_TERMS)
    assert message in caplog.text  # in the log file too
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").iteration == 3  # last good one
    assert sorted(read_losses(tmp_path)) == [1, 2, 3, 4]
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_short_fpn_run_learns(tiny_cfg, tmp_path):
    """A ResNet-18-FPN from scratch learns to tell objects from background and their classes in a
    short run on the tiny shapes set.

    The criterion is the validation loss on the 12 training images (``dataset.test_sets=[train]``,
    eval mode, seeded sampling): its two classification terms start at chance, ln 2 (``rpn_cls``)
    and ln 4 (``roi_cls``, three classes and background), as the score layers are initialised near
    zero. After 60 steps they are about 0.11 and 0.5 of that on every run measured, so the bounds
    (0.3 and 0.75) leave a wide margin on any CPU, while an untrained model (checked: the 1-step
    run) or one whose RPN or RoI head does not learn stays near chance and fails. mAP is no test
    here: 60 steps place few boxes well, and it moved between 0.03 and 0.11 from one evaluation,
    seed or CPU to the next (0.01 untrained); the logged training loss is one batch of 2 images,
    and its box terms rise as more proposals become foreground."""
    fpn = (
        "model=resnet50_fpn",
        "model.backbone.depth=18",
        "model.backbone.weights=null",
        "model.anchors.scales=[0.5]",
        "model.rpn.pre_nms_top_n_train=200",
        "model.rpn.post_nms_top_n_train=100",
        "model.rpn.pre_nms_top_n_test=100",
        "model.rpn.post_nms_top_n_test=50",
        "model.roi_head.batch_size_per_image=32",
        "model.roi_head.mlp_dim=128",
        "optimizer=adamw",
        "optimizer.base_lr=0.002",
        "optimizer.reference_batch_size=2",
        "schedule=cosine",
        "schedule.warmup_iters=5",
        "dataset.test_sets=[train]",
    )
    untrained = train(tiny_cfg(*fpn, "train.max_iters=1"), tmp_path / "one")["val_loss"]
    trained = train(tiny_cfg(*fpn, "train.max_iters=60", "train.checkpoint_period=60"), tmp_path / "sixty")["val_loss"]

    def learned(val_loss):
        return val_loss["rpn_cls"] < 0.3 * math.log(2) and val_loss["roi_cls"] < 0.75 * math.log(4)

    assert untrained["rpn_cls"] == pytest.approx(math.log(2), abs=0.05)  # chance: the bounds can fail
    assert untrained["roi_cls"] == pytest.approx(math.log(4), abs=0.1)
    assert not learned(untrained)
    assert learned(trained), trained


def test_a_held_run_folder_is_left_alone(tiny_cfg, tmp_path):
    """A second training in a folder in use stops before writing or cleaning anything: the staged
    checkpoint of the training that holds it is not taken for one left by an interrupted save."""
    staged = tmp_path / "checkpoints" / ".last.pt.a1b2c3.tmp"
    staged.parent.mkdir()
    staged.write_bytes(b"\0" * 100)
    with RunFolderLock(tmp_path):
        with pytest.raises(RunFolderError, match="in use by the training started"):
            train(tiny_cfg("train.max_iters=1", "train.eval_at_end=false"), tmp_path)
    assert os.listdir(tmp_path / "checkpoints") == [staged.name] and not (tmp_path / "losses.jsonl").exists()


def test_a_new_run_in_a_finished_runs_folder_replaces_nothing(tiny_cfg, tmp_path):
    short = ("train.max_iters=2", "train.eval_at_end=false", "train.checkpoint_period=1")
    train(tiny_cfg(*short), tmp_path)

    def contents():
        return {p.name: p.read_bytes() for p in [*(tmp_path / "checkpoints").iterdir(), tmp_path / "losses.jsonl"]}

    before = contents()
    with pytest.raises(RunFolderError, match="already holds a training run"):
        train(tiny_cfg(*short), tmp_path)
    assert contents() == before
    assert not (tmp_path / LOCK_FILE).exists()  # given back
    train(tiny_cfg(*short, "train.overwrite=true"), tmp_path)  # on request only
    assert sorted(read_losses(tmp_path)) == [1, 2]


def test_a_failing_final_evaluation_keeps_the_training(tiny_cfg, tmp_path, monkeypatch, caplog):
    """The last test image fails to decode in the final evaluation (after the start-up check)."""
    cfg = tiny_cfg("train.checkpoint_period=100")
    last_image = build_dataset(cfg.dataset, "test").image_path(5)

    def read_or_fail(path, height, width):
        if path == last_image:
            raise DatasetError(Problem(path, None, "cannot decode image (image file is truncated)"))
        return read_image_checked(path, height, width)

    monkeypatch.setattr(frcnn.data.dataset, "read_image_checked", read_or_fail)
    with pytest.raises(DatasetError, match="truncated"):
        train(cfg, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    assert load_checkpoint(last).iteration == 6 and not (tmp_path / "metrics.json").exists()
    assert "evaluation at iteration 6 failed (" in caplog.text
    assert f"score it with python scripts/evaluate.py checkpoint={last}" in caplog.text

    monkeypatch.undo()  # the image repaired: resuming redoes the evaluation
    metrics = train(tiny_cfg("train.checkpoint_period=100", "train.resume=auto"), tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_a_failing_periodic_evaluation_keeps_the_staged_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "evaluate", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(tiny_cfg("train.checkpoint_period=3", "train.eval_period=3"), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").iteration == 3


def test_test_images_are_checked_before_training(tiny_root, tiny_cfg, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    image = root / "JPEGImages" / "test_000005.jpg"
    image.write_bytes(image.read_bytes()[:200])  # a truncated JPEG
    with pytest.raises(DatasetError, match="test_000005.jpg"):
        train(tiny_cfg(f"dataset.root={root}"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_stop_request_finishes_the_current_step_only(tiny_cfg, tmp_path, monkeypatch):
    """SIGTERM arriving during iteration 5 (in its forward pass): iteration 5 is the last one."""

    def signal_self(model, losses):
        os.kill(os.getpid(), signal.SIGTERM)
        return losses

    monkeypatch.setattr(FasterRCNN, "forward", forward_with(signal_self, {5}))
    outcome = run_training(tiny_cfg("train.max_iters=20", "train.eval_at_end=false"), tmp_path)
    assert outcome.stopped and outcome.iteration == 5 and outcome.metrics is None
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").iteration == 5
    assert sorted(read_losses(tmp_path)) == [1, 2, 3, 4, 5]
