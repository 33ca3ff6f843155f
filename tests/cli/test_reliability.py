"""The commands on the reliability cases: divergence, a bad image met by a DataLoader worker, a
poisoned results file, an unwritable output folder and harmful config values each end in one
console line naming the cause (the run's log keeps the traceback)."""

import json
import math
import shutil

import pytest
from tests.cli.test_errors import error_line, run_script

from frcnn.data.shapes import generate_shapes
from frcnn.checkpoint.io import load_checkpoint
from frcnn.utils.finite import nonfinite_tensors


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_tiny")
    generate_shapes(str(root), num_train=12, num_test=6, min_image_size=64, max_image_size=96, seed=0)
    return root


@pytest.mark.slow
def test_divergence_command_ends_in_one_line_and_leaves_finite_checkpoints(tiny_shapes, tmp_path, capsys,
                                                                             monkeypatch):
    """``python scripts/train.py debug=tiny device=cpu optimizer.base_lr=1e6 train.max_iters=12
    train.checkpoint_period=1`` used to end in a segmentation fault (exit 139)."""
    run_dir = tmp_path / "run"
    result = run_script("train.py", "debug=tiny", "device=cpu", "optimizer.base_lr=1e6", "train.max_iters=12",
                        "train.checkpoint_period=1", f"dataset.root={tiny_shapes}", f"hydra.run.dir={run_dir}",
                        cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 1
    line = error_line(result, "train.py")
    assert "training diverged" in line and "grad_norm=" in line and "rpn_cls=" in line
    for path in (run_dir / "checkpoints").glob("*.pt"):
        assert nonfinite_tensors(load_checkpoint(path)) == [], path


@pytest.mark.slow
def test_a_bad_image_in_a_worker_is_named_by_train(tiny_shapes, tmp_path, capsys, monkeypatch):
    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, root)
    stem = (root / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    broken = root / "JPEGImages" / f"{stem}.jpg"
    broken.write_bytes(b"garbage")  # a training image: the 6 iterations of 2 images read all 12
    result = run_script("train.py", "debug=tiny", "device=cpu", "dataset.num_workers=2", f"dataset.root={root}",
                        "train.eval_at_end=false", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert result.returncode == 2
    line = error_line(result, "train.py")
    assert f"invalid dataset: {broken}: cannot decode image" in line and "problems" not in line


@pytest.mark.parametrize("arguments, expected", [
    (["train.clip_grad_norm=-1"], "train.clip_grad_norm must be positive or null, got -1.0"),
    (["dataset.min_size=[-64]"], "dataset.min_size every element must be positive, got [-64]"),
    (["dataset.max_size=0"], "dataset.max_size must be positive, got 0"),
    (["schedule.warmup_iters=-5"], "schedule.warmup_iters must be >= 0, got -5"),
    (["dataset.flip_prob=2"], "dataset.flip_prob must be in [0, 1], got 2.0"),
    (["model.rpn.nms_thresh=2"], "model.rpn.nms_thresh must be in [0, 1], got 2.0"),
    (["seed=-1"], "seed must be >= 0, got -1"),
])
def test_harmful_values_are_refused_naming_the_key(arguments, expected, tmp_path, capsys, monkeypatch):
    result = run_script("train.py", *arguments, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert result.returncode == 2
    assert expected in error_line(result, "train.py")


def test_evaluate_refuses_a_results_file_with_nan_naming_the_entry(tiny_shapes, tmp_path, capsys, monkeypatch):
    path = tmp_path / "predictions.json"
    entry = {"image_id": "000000", "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.5}
    path.write_text(json.dumps([entry, dict(entry, score=math.nan)]))
    common = [f"predictions={path}", f"dataset.root={tiny_shapes}", "dataset.shapes.num_train=12",
              "dataset.shapes.num_test=6", "dataset.shapes.min_image_size=64", "dataset.shapes.max_image_size=96"]
    result = run_script("evaluate.py", *common, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert result.returncode == 2
    assert f"{path}: entry 1: score is not finite" in error_line(result, "evaluate.py")


def test_predict_checks_the_output_folder_before_loading_the_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    (tmp_path / "blocker").write_text("")
    result = run_script("predict.py", f"checkpoint={tmp_path / 'missing.pt'}", f"input={tmp_path / 'photos'}",
                        f"output={tmp_path / 'blocker' / 'out'}", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2
    assert "blocker/out is not a writable folder" in error_line(result, "predict.py")  # not "checkpoint not found"
