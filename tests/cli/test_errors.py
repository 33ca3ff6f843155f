"""frcnn/cli/errors.py: common command-line mistakes end in one line naming the key, file or value,
exit code 2, and no traceback on the console; a run's train.log keeps the traceback. The
reliability cases (divergence, a bad image met by a DataLoader worker, a poisoned results file, an
unwritable output folder, harmful config values) each end in one console line naming the cause."""

import errno
import importlib
import json
import logging
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from frcnn.checkpoint.io import load_checkpoint
from frcnn.data.shapes import generate_shapes
from frcnn.utils.finite import nonfinite_tensors
from tests.helpers.formats import write_format

REPO = Path(__file__).resolve().parents[2]


# What ``python scripts/<name>.py`` runs: ``frcnn.cli.<name>.command()``.
SCRIPTS = {
    name: importlib.import_module(f"frcnn.cli.{name}")
    for name in ("train", "predict", "evaluate", "check_dataset", "convert_dataset")
}


def run_script(script: str, *args: str, cwd: Path, capsys, monkeypatch) -> SimpleNamespace:
    """Run ``python scripts/<script> args`` in this process (torch is imported once for all cases)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        SCRIPTS[script.removesuffix(".py")].command()
    for handler in list(logging.getLogger().handlers):  # close the run's log file
        logging.getLogger().removeHandler(handler)
        handler.close()
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=exit_info.value.code, stdout=out, stderr=err)


def error_line(result: SimpleNamespace, script: str) -> str:
    """The console's error line, after checking it is the only non-log line and no traceback shows."""
    console = result.stdout + result.stderr
    assert "Traceback" not in console and "HYDRA_FULL_ERROR" not in console, console
    lines = [line for line in result.stderr.splitlines() if not line.startswith("[")]  # "[time LEVEL name]" log lines
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{script}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bad_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "last.pt"
    path.write_bytes(b"this is not a checkpoint")
    return path


MISTAKES = [
    # (script, arguments, text the line must contain); {tmp} is a fresh folder, {bad} a garbage .pt file.
    # Mistakes found once the run has started (its folder and train.log exist) come first.
    (
        "train.py",
        ["experiment=voc07_r50_c4", "dataset.root={tmp}/VOCdevkit"],
        "dataset.root={tmp}/VOCdevkit: no such folder",
    ),
    ("train.py", ["train.batch_size=0"], "train.batch_size must be positive, got 0"),
    ("train.py", ["debug=tiny", "train.resume={bad}"], "cannot read checkpoint {bad}"),
    (
        "train.py",
        ["train.max_iters=abc"],
        "train.max_iters=abc: Value 'abc' of type 'str' could not be converted to Integer",
    ),
    ("train.py", ["train.maxiters=5"], "unknown key train.maxiters"),
    ("train.py", ["experiment=voc"], "Could not find 'experiment/voc'; choose one of: coco_r50_c4"),
    ("train.py", ["device=gpu"], "device=gpu: Invalid value 'gpu'"),
    ("predict.py", ["checkpoint={bad}", "input={tmp}"], "output is required: add output=VALUE"),
    ("predict.py", ["checkpoint={bad}", "input={tmp}/photos", "output={tmp}/out"], "input {tmp}/photos does not exist"),
    ("evaluate.py", [], "give exactly one of checkpoint=PATH"),
    ("evaluate.py", ["checkpoint={tmp}/last.pt"], "checkpoint not found: {tmp}/last.pt"),
    ("evaluate.py", ["checkpoint={bad}"], "cannot read checkpoint {bad}"),
    (
        "check_dataset.py",
        ["dataset=voc", "dataset.root={tmp}/VOCdevkit"],
        "dataset.root={tmp}/VOCdevkit: no such folder",
    ),
]


STARTED_RUNS = 3  # the first three mistakes above


@pytest.mark.slow
@pytest.mark.parametrize(("script", "arguments", "expected"), MISTAKES)
def test_mistake_ends_in_one_line_and_exit_code_2(
    script, arguments, expected, tmp_path, bad_checkpoint, capsys, monkeypatch
):
    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, bad=bad_checkpoint)

    run_dir = tmp_path / "run"
    extra = [f"hydra.run.dir={run_dir}"] if script in ("train.py", "evaluate.py") else []
    result = run_script(script, *map(fill, arguments), *extra, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2, result.stderr
    assert fill(expected) in error_line(result, script)
    log = run_dir / "train.log"
    if MISTAKES.index((script, arguments, expected)) < STARTED_RUNS:  # the run's log holds the traceback
        assert "Traceback (most recent call last)" in log.read_text()
    else:
        assert not log.exists()


@pytest.mark.parametrize(("error", "code", "traceback_on_console"),
                         [(FloatingPointError("non-finite loss at iteration 3"), 1, False),
                          (ValueError("schedule.steps=[2, 1] must be increasing"), 2, False),
                          (RuntimeError("a bug"), 1, True)])  # fmt: skip
def test_run_command_exit_codes_and_log_file(error, code, traceback_on_console, tmp_path, capsys, monkeypatch):
    from frcnn.cli.errors import run_command
    from frcnn.utils.logs import setup_logging

    def main():
        setup_logging(tmp_path / "train.log")
        raise error

    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as exit_info:
        run_command(main)
    logging.getLogger().handlers[-1].close()
    assert exit_info.value.code == code
    stderr = capsys.readouterr().err
    assert ("Traceback" in stderr) == traceback_on_console
    assert str(error) in stderr
    log = (tmp_path / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and str(error) in log


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_tiny")
    generate_shapes(str(root), num_train=12, num_test=6, min_image_size=64, max_image_size=96, seed=0)
    return root


@pytest.mark.slow
def test_divergence_command_ends_in_one_line_and_leaves_finite_checkpoints(tiny_shapes, tmp_path, capsys, monkeypatch):
    """``python scripts/train.py debug=tiny device=cpu optimizer.base_lr=1e6 train.max_iters=12
    train.checkpoint_period=1`` used to end in a segmentation fault (exit 139)."""
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        "debug=tiny",
        "device=cpu",
        "optimizer.base_lr=1e6",
        "train.max_iters=12",
        "train.checkpoint_period=1",
        f"dataset.root={tiny_shapes}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 1
    line = error_line(result, "train.py")
    assert "training diverged" in line and "grad_norm=" in line and "rpn_cls=" in line
    for path in (run_dir / "checkpoints").glob("*.pt"):
        assert nonfinite_tensors(load_checkpoint(path).to_dict()) == [], path


@pytest.mark.slow
def test_a_bad_image_in_a_worker_is_named_by_train(tiny_shapes, tmp_path, capsys, monkeypatch):
    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, root)
    stem = (root / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    broken = root / "JPEGImages" / f"{stem}.jpg"
    broken.write_bytes(b"garbage")  # a training image: the 6 iterations of 2 images read all 12
    result = run_script(
        "train.py",
        "debug=tiny",
        "device=cpu",
        "dataset.num_workers=2",
        f"dataset.root={root}",
        "train.eval_at_end=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 2
    line = error_line(result, "train.py")
    assert f"invalid dataset: {broken}: cannot decode image" in line and "problems" not in line


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["train.clip_grad_norm=-1"], "train.clip_grad_norm must be positive or null, got -1.0"),
        (["dataset.min_size=[-64]"], "dataset.min_size every element must be positive, got [-64]"),
        (["dataset.max_size=0"], "dataset.max_size must be positive, got 0"),
        (["schedule.warmup_iters=-5"], "schedule.warmup_iters must be >= 0, got -5"),
        (["dataset.flip_prob=2"], "dataset.flip_prob must be in [0, 1], got 2.0"),
        (["model.rpn.nms_thresh=2"], "model.rpn.nms_thresh must be in [0, 1], got 2.0"),
        (["seed=-1"], "seed must be >= 0, got -1"),
    ],
)
def test_harmful_values_are_refused_naming_the_key(arguments, expected, tmp_path, capsys, monkeypatch):
    result = run_script(
        "train.py",
        *arguments,
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 2
    assert expected in error_line(result, "train.py")


def test_evaluate_refuses_a_results_file_with_nan_naming_the_entry(tiny_shapes, tmp_path, capsys, monkeypatch):
    path = tmp_path / "predictions.json"
    entry = {"image_id": "000000", "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.5}
    path.write_text(json.dumps([entry, dict(entry, score=math.nan)]))
    common = [
        f"predictions={path}",
        f"dataset.root={tiny_shapes}",
        "dataset.shapes.num_train=12",
        "dataset.shapes.num_test=6",
        "dataset.shapes.min_image_size=64",
        "dataset.shapes.max_image_size=96",
    ]
    result = run_script(
        "evaluate.py",
        *common,
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 2
    assert f"{path}: entry 1: score is not finite" in error_line(result, "evaluate.py")


def test_predict_checks_the_output_folder_before_loading_the_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    (tmp_path / "blocker").write_text("")
    result = run_script(
        "predict.py",
        f"checkpoint={tmp_path / 'missing.pt'}",
        f"input={tmp_path / 'photos'}",
        f"output={tmp_path / 'blocker' / 'out'}",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 2
    assert "blocker/out is not a writable folder" in error_line(result, "predict.py")  # not "checkpoint not found"


@pytest.mark.parametrize(
    "error, code, message",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/runs/a/checkpoints/.last.pt.x.tmp"),
            1,
            "no space left on the device: /runs/a/checkpoints/.last.pt.x.tmp; free some or write the run to another "
            "folder",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/runs/a/train.log"),
            2,
            "Permission denied: /runs/a/train.log; choose a folder this process can write",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/ro/exported"),
            2,
            "Read-only file system: /mnt/ro/exported; choose a folder this process can write",
        ),
    ],
)
def test_the_machines_failures_end_in_one_line(error, code, message):
    from frcnn.cli.errors import error_message, exit_code

    assert exit_code(error) == code
    assert error_message(error, "train.py").startswith(message)


@pytest.mark.parametrize(
    "script, args",
    [
        ("evaluate.py", ["checkpoint=torchvision:fasterrcnn_resnet50_fpn"]),
        ("predict.py", ["checkpoint=torchvision:fasterrcnn_resnet50_fpn", "input=photos", "output=out"]),
    ],
)
def test_offline_torchvision_checkpoint_ends_in_one_line(script, args, tmp_path, capsys, monkeypatch):
    """An empty torch cache and no network: one line naming the URL and the file to place, exit 2 (was a
    30-line traceback, "unexpected error", exit 1, suggesting model.weights=, which these commands lack)."""
    import urllib.error

    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline"))
    )
    (tmp_path / "photos").mkdir()
    generate_shapes(str(tmp_path / "shapes"), num_train=1, num_test=1, min_image_size=64, max_image_size=64, seed=0)
    (tmp_path / "shapes" / "JPEGImages").rename(tmp_path / "photos" / "in")
    result = run_script(script, *args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2
    line = error_line(result, script)
    assert "cannot download https://" in line and f"place it at {tmp_path / 'torch' / 'hub' / 'checkpoints'}" in line
    assert "model.weights" not in line


def test_a_refused_command_leaves_no_stub_run_folder(tmp_path, capsys, monkeypatch):
    """A mistake found once the run started used to leave outputs/<date>/<time> with .hydra/ and a log."""
    result = run_script("train.py", "train.batch_size=0", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2 and "train.batch_size must be positive" in error_line(result, "train.py")
    assert not (tmp_path / "outputs").exists()


def test_a_permission_error_with_a_message_of_its_own_is_one_line():
    from frcnn.cli.errors import error_message, exit_code

    error = PermissionError("output folder /mnt/ro/exported is not writable")
    assert exit_code(error) == 2 and error_message(error, "export.py") == str(error)


def _break_yolo_columns(root: Path) -> str:
    label = sorted((root / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "0 0.5 0.5\n")
    return f"{label.name}: line {len(label.read_text().splitlines())}: 3 values"


def _break_yolo_class(root: Path) -> str:
    label = sorted((root / "labels" / "train").glob("*.txt"))[0]
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    return f"{label.name}: line 1: class id 7 is not in names"


def _break_labelme_shape(root: Path) -> str:
    path = sorted((root / "train").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record["shapes"].append({"label": "circle", "points": [[1, 1], [5, 5]], "shape_type": "line"})
    path.write_text(json.dumps(record))
    return f"{path.name}: shape {len(record['shapes']) - 1} ('circle'): shape_type 'line' is not a box"


def _break_cvat_box(root: Path) -> str:
    path = root / "annotations.xml"
    text = path.read_text()
    start = text.index("<box ")
    xbr = text.index('xbr="', start) + len('xbr="')
    path.write_text(text[:xbr] + "1000" + text[text.index('"', xbr) :])
    return "box extends outside the image: ["


@pytest.mark.parametrize(
    "layout, damage",
    [("yolo", _break_yolo_columns), ("yolo", _break_yolo_class), ("labelme", _break_labelme_shape),
     ("cvat", _break_cvat_box)],
    ids=["yolo-columns", "yolo-class", "labelme-shape", "cvat-outside"],
)  # fmt: skip
def test_a_fault_in_any_layout_is_one_line_naming_file_object_and_reason(
    tiny_shapes_root, tmp_path, capsys, monkeypatch, layout, damage
):
    root = write_format(layout, tiny_shapes_root, tmp_path / layout)
    expected = damage(root)
    run = tmp_path / "run"
    arguments = ("debug=tiny", "dataset=auto", f"dataset.root={root}", "device=cpu", f"hydra.run.dir={run}")
    result = run_script("train.py", *arguments, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2
    assert expected in error_line(result, "train.py")
