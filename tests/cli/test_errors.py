"""Common command-line mistakes end in one line naming the key, file or value, exit code 2,
and no traceback on the console; a run's train.log keeps the traceback."""

import importlib.util
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str):
    """scripts/<name>.py as a module (its ``command()`` is what ``python scripts/<name>.py`` runs)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {name: load_script(name) for name in ("train", "predict", "evaluate", "check_dataset")}


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
    ("train.py", ["experiment=voc07_r50_c4", "dataset.root={tmp}/VOCdevkit"], "dataset.root={tmp}/VOCdevkit: no such folder"),
    ("train.py", ["train.batch_size=0"], "train.batch_size must be positive, got 0"),
    ("train.py", ["debug=tiny", "train.resume={bad}"], "cannot read checkpoint {bad}"),
    ("train.py", ["train.max_iters=abc"], "train.max_iters=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train.py", ["train.maxiters=5"], "unknown key train.maxiters"),
    ("train.py", ["experiment=voc"], "Could not find 'experiment/voc'; choose one of: coco_r50_c4"),
    ("train.py", ["device=gpu"], "device=gpu: Invalid value 'gpu'"),
    ("predict.py", ["checkpoint={bad}", "input={tmp}"], "output is required: add output=VALUE"),
    ("predict.py", ["checkpoint={bad}", "input={tmp}/photos", "output={tmp}/out"], "input {tmp}/photos does not exist"),
    ("evaluate.py", [], "give exactly one of checkpoint=PATH"),
    ("evaluate.py", ["checkpoint={tmp}/last.pt"], "checkpoint not found: {tmp}/last.pt"),
    ("evaluate.py", ["checkpoint={bad}"], "cannot read checkpoint {bad}"),
    ("check_dataset.py", ["dataset=voc", "dataset.root={tmp}/VOCdevkit"], "dataset.root={tmp}/VOCdevkit: no such folder"),
]


STARTED_RUNS = 3  # the first three mistakes above


@pytest.mark.slow
@pytest.mark.parametrize(("script", "arguments", "expected"), MISTAKES)
def test_mistake_ends_in_one_line_and_exit_code_2(script, arguments, expected, tmp_path, bad_checkpoint, capsys,
                                                   monkeypatch):
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
