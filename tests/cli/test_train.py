"""scripts/train.py as users run it: SIGTERM then resume=auto, multirun, and torchrun with 2
CPU processes (the resumed run and the sweep run the command in the test process)."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from frcnn.checkpoint.io import load_checkpoint
from frcnn.cli.errors import EXIT_STOPPED
from frcnn.data import build_test_loader
from frcnn.evaluation import DetectionEvaluator, run_inference
from frcnn.models import build_model
from tests.helpers.commands import logged_iterations, start_training
from tests.helpers.configs import REPO, compose_train

pytestmark = pytest.mark.slow


def tiny_args(tiny_root, run_dir, *overrides):
    return ["debug=tiny", f"dataset.root={tiny_root}", "device=cpu", f"hydra.run.dir={run_dir}", *overrides]


def test_sigterm_saves_and_resume_auto_continues(tiny_root, tmp_path, in_process):
    run_dir = tmp_path / "run"
    args = tiny_args(
        tiny_root, run_dir, "train.max_iters=200", "train.checkpoint_period=1000", "train.eval_at_end=false"
    )
    proc = start_training(run_dir, *args)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED == 3, stderr[-3000:]  # saved and resumable, not finished

    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration
    assert 2 <= stopped_at < 200
    assert logged_iterations(run_dir) == list(range(1, stopped_at + 1))  # the step was finished
    assert "received SIGTERM" in (run_dir / "train.log").read_text()

    in_process("train.py", *args[:-3], f"train.max_iters={stopped_at + 2}", "train.eval_at_end=false",
               "train.resume=auto")  # fmt: skip
    assert f"at iteration {stopped_at}" in (run_dir / "train.log").read_text()
    assert logged_iterations(run_dir) == list(range(1, stopped_at + 3))  # nothing lost, nothing repeated
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == stopped_at + 2


def test_multirun_sweeps_into_separate_run_dirs(tiny_root, tmp_path, in_process):
    sweep = tmp_path / "sweep"
    in_process(
        "train.py",
        "-m",
        "debug=tiny",
        f"dataset.root={tiny_root}",
        "device=cpu",
        "train.max_iters=1",
        "train.eval_at_end=false",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    )
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.pt").is_file()
        assert (sweep / job / "train.log").is_file()
    assert logged_iterations(sweep / "0") == logged_iterations(sweep / "1") == [1]
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [row["job"] for row in rows] == ["0", "1"]
    assert [row["overrides"].split()[-1] for row in rows] == ["seed=0", "seed=1"]
    assert rows[0]["voc07_mAP"] == ""  # eval_at_end=false: no metrics.json
    assert (sweep / "summary.md").read_text().startswith("| job | overrides |")


def test_torchrun_two_cpu_processes(tiny_root, tmp_path):
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "scripts/train.py",
        *tiny_args(tiny_root, run_dir, "train.max_iters=3", "train.eval_batch_size=1"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    log_text = (run_dir / "train.log").read_text()
    assert "rank 0 of 2" in log_text
    assert "weights identical on all 2 processes" in log_text  # DDP kept the replicas in sync
    assert "evaluating" not in log_text  # the evaluator saw every test image

    # The 2-process evaluation (each rank its half, gathered) equals a 1-process evaluation of
    # the same weights: every test image counted exactly once.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    cfg = compose_train("debug=tiny", f"dataset.root={tiny_root}")
    assert len(ckpt.training.rng) == 2  # one RNG state per process
    model = build_model(cfg.model, len(ckpt.class_names))
    model.load_state_dict(ckpt.model)
    loader = build_test_loader(cfg.dataset, batch_size=1)
    single = run_inference(model, loader, DetectionEvaluator(loader.dataset), torch.device("cpu"))
    for metric in ("voc07", "voc"):
        assert single[metric]["mAP"] == pytest.approx(metrics[metric]["mAP"])
        assert single[metric]["AP"] == pytest.approx(metrics[metric]["AP"])
    assert single["coco"] == pytest.approx(metrics["coco"])
