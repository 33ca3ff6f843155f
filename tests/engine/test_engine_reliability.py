"""Reliability of the training engine: divergence never poisons a checkpoint, unreadable or
mismatched checkpoints are named in one line, interrupted saves are cleaned up, and a stalled
or impatiently stopped distributed job ends."""

import copy
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from frcnn.engine import distributed as du
from frcnn.engine.checkpoint import (
    CheckpointDir,
    CheckpointError,
    load_checkpoint,
    load_resume_checkpoint,
    save_checkpoint,
)
from frcnn.engine.divergence import DivergenceError, NonFiniteLossError, check_weights, nonfinite_tensors
from frcnn.engine.events import records_up_to
from frcnn.engine.trainer import train
from frcnn.models import FasterRCNN, build_model
from frcnn.models.checkpoint_fit import CheckpointMismatchError, load_checkpoint_weights
from frcnn.models.finite import NonFiniteBoxError

REPO = Path(__file__).resolve().parents[2]
LOSS_TERMS = ["rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"]


def records(run_dir: Path) -> dict[int, dict]:
    lines = (run_dir / "losses.jsonl").read_text().splitlines()
    return {r["iteration"]: r for r in map(json.loads, lines) if "loss/total" in r}


def all_finite(path: Path) -> bool:
    return nonfinite_tensors(load_checkpoint(path)) == []


# -- divergence -------------------------------------------------------------------------------

@pytest.mark.slow
def test_huge_learning_rate_stops_before_saving_and_resumes_with_a_sane_one(tiny_cfg, tmp_path):
    """``optimizer.base_lr=1e6``: the run used to segfault in roi_align or save NaN weights."""
    diverging = ("optimizer.base_lr=1e6", "train.max_iters=12", "train.checkpoint_period=1", "train.eval_at_end=false",
                 "train.keep_checkpoints=0")  # last.pt only: fewer writes (the command's own run is in tests/api)
    with pytest.raises(DivergenceError) as info:
        train(tiny_cfg(*diverging), tmp_path)
    message = str(info.value)
    assert "\n" not in message and "training diverged" in message and "grad_norm=" in message
    assert all(f"{k}=" in message for k in LOSS_TERMS)
    stopped_at = int(message.split("iteration ")[1].split(":")[0])
    ckpts = tmp_path / "checkpoints"
    assert not list(ckpts.glob(".*.tmp"))  # the discarded state left no file
    for path in ckpts.glob("*.pt"):
        assert all_finite(path), path
    last = load_checkpoint(ckpts / "last.pt")
    assert f"(iteration {last['iteration']}) is the last checkpoint" in message
    assert last["iteration"] < stopped_at
    saved = records(tmp_path)
    assert all(math.isfinite(r["grad_norm"]) for i, r in saved.items() if i < stopped_at)

    # A sane learning rate continues from the last checkpoint: its weights take finite steps.
    resume = (*diverging[1:], "train.resume=auto", "train.resume_allow_config_change=true")
    train(tiny_cfg(*resume, f"train.max_iters={last['iteration'] + 2}"), tmp_path)
    resumed = load_checkpoint(ckpts / "last.pt")
    assert resumed["iteration"] == last["iteration"] + 2 and nonfinite_tensors(resumed) == []


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


def test_a_staged_checkpoint_is_committed_only_after_a_finite_step(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=2)
    ckpts.save_last({"model": {"w": torch.ones(1)}, "iteration": 1}, periodic=True)
    ckpts.stage_last({"model": {"w": torch.ones(1) * 2}, "iteration": 2}, periodic=True)
    assert load_checkpoint(ckpts.last)["iteration"] == 1 and ckpts.pending
    ckpts.discard()  # the next step failed
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "model_0000001.pt"]
    ckpts.stage_last({"model": {"w": torch.ones(1) * 3}, "iteration": 3}, periodic=True)
    ckpts.commit()  # the next step succeeded
    assert load_checkpoint(ckpts.last)["iteration"] == 3
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "model_0000001.pt", "model_0000003.pt"]


def test_grad_norm_is_logged_every_step_before_clipping(tiny_cfg, tmp_path):
    train(tiny_cfg("train.max_iters=2", "train.eval_at_end=false", "train.clip_grad_norm=0.001"), tmp_path)
    norms = [r["grad_norm"] for r in records(tmp_path).values()]
    assert len(norms) == 2 and all(n > 0.001 for n in norms)  # the norm measured, not the clipped one


def _forward_with(fault, at: set[int]):
    """FasterRCNN.forward with ``fault(self, losses)`` applied at the given training calls."""
    forward = FasterRCNN.forward
    calls = {"train": 0}

    def patched(self, images, image_sizes, targets=None):
        out = forward(self, images, image_sizes, targets)
        if self.training:
            calls["train"] += 1
            if calls["train"] in at:
                out = fault(self, out)
        return out

    return patched


def _nan_gradient(model, losses):
    # A finite loss (sqrt(0) = 0) whose gradient is NaN (0 * 1 / (2 sqrt(0))).
    weight = model.roi_head.score.weight
    losses["roi_cls"] = losses["roi_cls"] + (weight * 0).sum().sqrt()
    return losses


def test_nonfinite_gradient_with_a_finite_loss_stops(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(FasterRCNN, "forward", _forward_with(_nan_gradient, {3}))
    with pytest.raises(DivergenceError, match=r"non-finite gradient at iteration 3: .*grad_norm=nan.* last.pt "
                                              r"\(iteration 1\) is the last checkpoint \(the one of iteration 2 was "
                                              r"discarded"):
        train(tiny_cfg("train.checkpoint_period=1", "train.eval_at_end=false"), tmp_path)
    # Iteration 2's weights gave non-finite gradients: their checkpoint never became last.pt.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "model_0000001.pt"]


def test_skip_drops_updates_and_stops_after_too_many_in_a_row(tiny_cfg, tmp_path, monkeypatch, caplog):
    def nan_loss(model, losses):
        losses["rpn_loc"] = losses["rpn_loc"] * torch.nan
        return losses

    monkeypatch.setattr(FasterRCNN, "forward", _forward_with(nan_loss, {2, 4}))
    skip = ("train.on_nonfinite=skip", "train.eval_at_end=false", "train.max_iters=5", "train.checkpoint_period=5")
    with caplog.at_level(logging.WARNING):
        train(tiny_cfg(*skip), tmp_path / "skip")
    assert "2 updates dropped" in caplog.text
    assert load_checkpoint(tmp_path / "skip" / "checkpoints" / "last.pt")["iteration"] == 5
    assert all_finite(tmp_path / "skip" / "checkpoints" / "last.pt")

    monkeypatch.setattr(FasterRCNN, "forward", _forward_with(_nan_gradient, {2, 3}))
    with pytest.raises(DivergenceError, match=r"2 steps in a row dropped \(train.max_nonfinite_steps=2\)"):
        train(tiny_cfg(*skip, "train.max_nonfinite_steps=2"), tmp_path / "stop")


def test_nonfinite_rois_in_the_forward_pass_stop_the_run_by_name(tiny_cfg, tmp_path, monkeypatch):
    def boxes_overflowed(model, losses):
        raise NonFiniteBoxError("3 of 50 RoIs have a non-finite coordinate")

    monkeypatch.setattr(FasterRCNN, "forward", _forward_with(boxes_overflowed, {2}))
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
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 1}, path)
    poisoned = {"model": {"w": torch.tensor([1.0, math.nan])}, "optimizer": {"state": {0: {"exp_avg": torch.ones(1)}}},
                "iteration": 2}
    with pytest.raises(DivergenceError, match=r"refusing to write .*last.pt: non-finite values in model.w"):
        save_checkpoint(poisoned, path)
    assert load_checkpoint(path)["iteration"] == 1 and os.listdir(tmp_path) == ["last.pt"]


# -- checkpoints ------------------------------------------------------------------------------

def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog):
    ckpts = CheckpointDir(tmp_path / "checkpoints", keep=3)
    for iteration in (2, 4):
        ckpts.save_last({"model": {}, "iteration": iteration}, periodic=True)
    ckpts.last.write_bytes(ckpts.last.read_bytes()[:100])  # killed in the middle of a copy
    with caplog.at_level(logging.WARNING):
        path, state = load_resume_checkpoint("auto", tmp_path)
    assert path.name == "model_0000004.pt" and state["iteration"] == 4
    assert "last.pt" in caplog.text and "resuming from" in caplog.text and "model_0000004.pt" in caplog.text

    ckpts.last.write_bytes(b"")
    (ckpts.directory / "model_0000004.pt").write_bytes(b"")
    (ckpts.directory / "model_0000002.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no checkpoint .* can be read: .*last.pt: the file is empty") as info:
        load_resume_checkpoint("auto", tmp_path)
    assert "\n" not in str(info.value) and str(info.value).count("empty") == 3
    with pytest.raises(CheckpointError, match="empty"):  # a named file: no fallback
        load_resume_checkpoint(str(ckpts.last), tmp_path)


def test_unreadable_checkpoints_are_one_line_with_a_reason(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt: the file is empty \(0 bytes"):
        load_checkpoint(empty)
    foreign = tmp_path / "list.pt"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="list.pt is not an frcnn checkpoint"):
        load_checkpoint(foreign)


def test_leftover_temporary_files_are_removed_on_the_next_start(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=1)
    save_checkpoint({"model": {}, "iteration": 3}, ckpts.last)
    stale = [tmp_path / ".last.pt.k1llq7.tmp", tmp_path / ".model_0000003.pt.x9.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    ckpts.remove_temporaries()
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_trainer_cleans_temporaries_at_start(tiny_cfg, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.pt.a1b2c3.tmp").write_bytes(b"\0" * 100)
    train(tiny_cfg("train.max_iters=1", "train.eval_at_end=false"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]


@pytest.mark.parametrize("change, reason", [
    ({"depth": 34}, "it holds a ResNet-18 backbone, this model is ResNet-34 (model.backbone.depth)"),
    ({"classes": 5}, "it was trained on 3 classes, this model has 5 (the dataset's class list)"),
    ({"architecture": "fpn"}, "it holds a c4 detector, this model is fpn (model.architecture)"),
])
def test_a_mismatched_checkpoint_is_named_with_the_reason(tiny_cfg, change, reason):
    cfg = tiny_cfg()
    source = build_model(cfg.model, num_classes=3)
    checkpoint = {"model": source.state_dict(), "class_names": ["a", "b", "c"],
                  "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)}
    model_cfg = copy.deepcopy(cfg.model)
    if "depth" in change:
        model_cfg.backbone.depth = change["depth"]
    if "architecture" in change:
        model_cfg = tiny_cfg("model=resnet50_fpn", "model.backbone.depth=18").model
    classes = change.get("classes", 3)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint_weights(build_model(model_cfg, num_classes=classes), checkpoint, "ckpt.pt", model_cfg, classes)
    assert str(info.value) == f"ckpt.pt does not fit this model: {reason}"


def test_losses_jsonl_with_a_partial_last_line(tmp_path, caplog):
    path = tmp_path / "losses.jsonl"
    path.write_text('{"iteration": 1, "loss/total": 2.0}\n{"iteration": 2, "loss/total": 1.5}\n{"iteration": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert [json.loads(line)["iteration"] for line in records_up_to(path, 2)] == [1, 2]
    assert "incomplete last line 3" in caplog.text
    path.write_text('{"iteration": 1}\n{"iter\n{"iteration": 3}\n')
    with pytest.raises(ValueError, match=r"losses.jsonl: line 2 is not a losses record"):
        records_up_to(path, 3)


# -- distributed ------------------------------------------------------------------------------

class _FakeStore:
    def __init__(self, counts):
        self.values = {f"frcnn/collectives/{r}": str(c).encode() for r, c in counts.items()}

    def check(self, keys):
        return all(k in self.values for k in keys)

    def get(self, key):
        return self.values[key]


def test_a_collective_timeout_names_the_ranks_behind(monkeypatch):
    monkeypatch.setattr(du, "is_distributed", lambda: True)
    monkeypatch.setattr(du, "get_rank", lambda: 0)
    monkeypatch.setattr(du, "get_world_size", lambda: 3)
    monkeypatch.setattr(du._progress, "store", _FakeStore({0: 7, 1: 6, 2: 7}))
    monkeypatch.setattr(du._progress, "timeout_s", 4.0)
    timeout = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 4000ms for recv operation")
    error = du.stalled_rank_error(timeout)
    assert isinstance(error, du.StalledRankError)
    assert str(error).startswith("rank(s) 1 (1 behind) stopped responding: rank 0 waited 4 s (train.dist_timeout)")
    assert du.stalled_rank_error(RuntimeError("CUDA out of memory")) is None  # not a peer failure


STALL_WORKER = """
import os, signal, sys, torch
from frcnn.engine import distributed as du
from frcnn.utils.command import error_message
du.init_distributed(torch.device("cpu"), timeout_s=2)
open(os.environ["PID_DIR"] + f"/{du.get_rank()}", "w").write(str(os.getpid()))
try:
    for step in range(1000):
        if du.get_rank() == 1 and step == 3:
            os.kill(os.getpid(), signal.SIGSTOP)  # a rank that stops responding
        du.all_reduce_mean(torch.ones(1))
except RuntimeError as e:
    print(f"rank {du.get_rank()}: {error_message(du.stalled_rank_error(e), 'worker')}", file=sys.stderr, flush=True)
    du.destroy_distributed()
    sys.exit(1)
"""


@pytest.mark.slow
def test_a_stalled_rank_ends_the_job_with_its_rank_named(tmp_path):
    """Two gloo processes under torchrun; rank 1 stops (SIGSTOP). Rank 0 names it after the 2 s
    collective timeout, and torchrun ends the job: no process is left behind."""
    (tmp_path / "worker.py").write_text(STALL_WORKER)
    env = dict(os.environ, PYTHONPATH=str(REPO), PID_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "--max-restarts=0", str(tmp_path / "worker.py")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "rank 0: rank(s) 1 (1 behind) stopped responding: rank 0 waited 2 s (train.dist_timeout)" in result.stderr
    for rank in (0, 1):
        pid = int((tmp_path / str(rank)).read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


SIGNAL_WORKER = """
import logging, os
logging.basicConfig(level=logging.INFO)
from frcnn.engine.interrupt import StopRequest
with StopRequest() as stop:
    print("ready", flush=True)
    os.read(os.pipe()[0], 1)  # blocked, as in a collective waiting for a stalled process
"""


def test_a_second_signal_exits_at_once_even_when_blocked(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", SIGNAL_WORKER], env=dict(os.environ, PYTHONPATH=str(REPO)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None  # the first signal only asks the loop to stop
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    stderr = process.stderr.read()
    assert "received SIGTERM: finishing the current iteration" in stderr
    assert "received SIGTERM again: exiting at once" in stderr


ORPHAN = """
import os, subprocess, sys, time
if sys.argv[1] == "launcher":  # stands in for torchrun: starts a worker, then is killed
    worker = subprocess.Popen([sys.executable, "-c", sys.argv[2], "worker", sys.argv[2]])
    print(worker.pid, flush=True)
    time.sleep(600)
else:
    from frcnn.engine.distributed import stop_with_launcher
    stop_with_launcher()
    print("armed", file=sys.stderr, flush=True)
    time.sleep(600)
"""


def test_workers_stop_when_the_launcher_is_killed(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TORCHELASTIC_RUN_ID="test")
    launcher = subprocess.Popen([sys.executable, "-c", ORPHAN, "launcher", ORPHAN], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    worker_pid = int(launcher.stdout.readline())
    assert launcher.stderr.readline().strip() == "armed"
    launcher.kill()  # kill -9 torchrun
    launcher.wait()
    for _ in range(100):
        try:
            if Path(f"/proc/{worker_pid}/stat").read_text().split()[2] == "Z":
                return  # ended by SIGTERM, not yet reaped by its new parent
        except FileNotFoundError:
            return  # ended and reaped
        time.sleep(0.1)
    os.kill(worker_pid, signal.SIGKILL)
    pytest.fail("the worker outlived its launcher")


# -- config ranges ----------------------------------------------------------------------------

def _numeric_keys(schema, prefix: str = "") -> list[str]:
    """Dotted keys of every int/float field (or list of them, or Optional) of a dataclass schema."""
    import dataclasses
    import typing

    keys = []
    for field in dataclasses.fields(schema):
        kind = typing.get_type_hints(schema)[field.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if dataclasses.is_dataclass(kind):
            keys += _numeric_keys(kind, f"{prefix}{field.name}.")
        elif kind in (int, float) or (args and all(a in (int, float) for a in args)) or (
                typing.get_origin(kind) is list and typing.get_args(kind)[0] in (int, float)):
            keys.append(prefix + field.name)
    return keys


def test_every_numeric_key_has_a_range():
    from frcnn.config import TrainConfig
    from frcnn.config_ranges import EVALUATE_RANGES, PREDICT_RANGES, RANGES
    from frcnn.evaluation.config import EvaluateConfig, PredictConfig

    assert sorted(_numeric_keys(TrainConfig)) == sorted(RANGES)
    nodes = [k for k in RANGES if k.startswith(("dataset.", "model."))]
    assert sorted(_numeric_keys(EvaluateConfig)) == sorted(nodes + list(EVALUATE_RANGES))
    assert sorted(_numeric_keys(PredictConfig)) == sorted(nodes + list(PREDICT_RANGES))


def _outside(allowed, is_int: bool):
    candidates = [-1, 0, 5, 10**9] if is_int else [-1.0, -0.5, 0.0, 1.0, 1.5, 2.0, 1e9]
    for value in candidates:
        if not allowed.test(value):
            return value
    raise AssertionError(f"no value outside {allowed.text}")


def test_each_range_rejects_a_value_outside_it_naming_the_key(tiny_cfg):
    from frcnn.config_ranges import RANGES, check_ranges

    cfg = tiny_cfg()
    check_ranges(cfg)  # the defaults are inside every range
    for key, allowed in RANGES.items():
        default = OmegaConf.select(cfg, key)
        sample = default[0] if allowed.each else default
        is_int = isinstance(sample, int) and not isinstance(sample, bool)
        bad_values = [_outside(allowed, is_int)]
        if allowed.each:
            bad_values = [[bad_values[0]] * (allowed.length or 1), []]
        for bad in bad_values:
            broken = copy.deepcopy(cfg)
            OmegaConf.update(broken, key, bad, merge=False)
            with pytest.raises(ValueError) as info:
                check_ranges(broken)
            assert str(info.value).startswith(f"{key} "), (key, bad, str(info.value))
    broken = copy.deepcopy(cfg)
    broken.model.rpn.neg_iou_thresh = 0.8
    with pytest.raises(ValueError, match=r"model.rpn.neg_iou_thresh=0.8 exceeds model.rpn.pos_iou_thresh=0.7"):
        check_ranges(broken)


def test_a_signal_to_a_forked_worker_does_not_count_for_the_parent():
    """Ctrl-C reaches the DataLoader workers too; their share must not be the parent's second signal."""
    from frcnn.engine.interrupt import StopRequest

    with StopRequest() as stop:
        child = os.fork()
        if child == 0:  # the worker: receives the same Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
            os._exit(0)
        os.waitpid(child, 0)
        time.sleep(0.3)  # time for the watcher to see a byte, were one written
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)  # the parent's own first Ctrl-C only asks to stop
        assert stop.requested
