"""scripts/train.py with faults injected: two trainings on one folder, a re-run into a finished
folder, a planted overrides file, an evaluation that fails on its last image, and a full disk.
No checkpoint of an earlier run is lost or replaced, and every refusal is one line. The training
held in the folder runs in a subprocess; the other commands run in the test process."""

import shutil
import signal

import pytest
import torch
from omegaconf import OmegaConf

import frcnn.data.dataset
from frcnn.checkpoint.io import load_checkpoint
from frcnn.cli.errors import EXIT_FAILURE, EXIT_STOPPED, EXIT_USAGE
from frcnn.data.validation import DatasetError, Problem
from frcnn.engine.resume import RUN_OVERRIDES
from tests.helpers.commands import logged_iterations, start_training

pytestmark = pytest.mark.slow

EVIL = "+hydra.callbacks.evil._target_=logging.FileHandler"


def args(tiny_root, run_dir, *overrides):
    return ["debug=tiny", f"dataset.root={tiny_root}", "device=cpu", f"hydra.run.dir={run_dir}", *overrides]


@pytest.fixture
def train(in_process):
    """``train(*argv)``: scripts/train.py ``argv`` (in this process): its exit status and output."""
    return lambda *argv: in_process("train.py", *argv, check=False)


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: ") and "Traceback" not in result.stderr, result.stderr[-3000:]
    return last


def snapshot(run_dir) -> dict[str, bytes]:
    """Every checkpoint, losses.jsonl and metrics.json of a run folder, by name."""
    files = [*(run_dir / "checkpoints").glob("*.pt"), run_dir / "losses.jsonl", run_dir / "metrics.json"]
    return {p.name: p.read_bytes() for p in files if p.exists()}


def test_two_trainings_one_folder_and_a_rerun_into_it(train, tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    first_args = args(
        tiny_root, run_dir, "train.max_iters=300", "train.checkpoint_period=1000", "train.eval_at_end=false"
    )
    first = start_training(run_dir, *first_args)
    second = train(*args(tiny_root, run_dir, "train.max_iters=2"))
    assert "is in use by the training started" in one_line_error(second, EXIT_USAGE)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == EXIT_STOPPED, stderr[-3000:]
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration
    assert logged_iterations(run_dir) == list(range(1, stopped_at + 1))  # the first run's alone, once each

    before = snapshot(run_dir)
    rerun = train(*args(tiny_root, run_dir, "train.max_iters=2"))
    assert "already holds a training run" in one_line_error(rerun, EXIT_USAGE)
    assert snapshot(run_dir) == before


def test_a_planted_overrides_file_runs_nothing(train, tiny_root, tmp_path):
    run_dir, planted_log = tmp_path / "run", tmp_path / "planted.log"
    assert train(*args(tiny_root, run_dir, "train.max_iters=2", "train.eval_at_end=false")).returncode == 0
    before = snapshot(run_dir)
    evil = f"{EVIL}\n+hydra.callbacks.evil.filename={planted_log}"
    for saved in (run_dir / ".hydra" / "overrides.yaml", run_dir / RUN_OVERRIDES):
        OmegaConf.save(OmegaConf.create([*OmegaConf.load(saved), *evil.split("\n")]), saved)
    refused = train("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=3")
    message = one_line_error(refused, EXIT_USAGE)
    assert f"{run_dir / RUN_OVERRIDES}: refusing the saved override '{EVIL}'" in message
    assert not planted_log.exists() and snapshot(run_dir) == before


def test_a_failing_evaluation_and_a_full_disk_lose_no_checkpoint(train, tiny_root, tmp_path, monkeypatch):
    run_dir = tmp_path / "eval"
    read = frcnn.data.dataset.read_image_checked

    def read_or_fail(path, height, width):
        if path.endswith("test_000005.jpg"):
            raise DatasetError(Problem(path, None, "cannot decode image (image file is truncated)"))
        return read(path, height, width)

    with monkeypatch.context() as last_image_fails:
        last_image_fails.setattr(frcnn.data.dataset, "read_image_checked", read_or_fail)
        failed = train(*args(tiny_root, run_dir, "train.checkpoint_period=100"))
    assert "test_000005.jpg" in one_line_error(failed, EXIT_USAGE)
    assert "score it with python scripts/evaluate.py checkpoint=" in failed.stderr
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == 6  # the training is kept

    run_dir = tmp_path / "full"
    save, saves = torch.save, []

    def save_until_full(obj, f):
        saves.append(f)
        if len(saves) > 2:  # last.pt and model_0000003.pt of iteration 3 fit
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        save(obj, f)

    with monkeypatch.context() as disk_fills_after_one_checkpoint:
        disk_fills_after_one_checkpoint.setattr(torch, "save", save_until_full)
        disk_fills_after_one_checkpoint.setattr(
            shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**9, 10**9, 0)
        )
        full = train(*args(tiny_root, run_dir, "train.eval_at_end=false"))
    message = one_line_error(full, EXIT_FAILURE)
    assert "no space left on the device" in message and "checkpoints/" in message
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == 3  # the one written before
