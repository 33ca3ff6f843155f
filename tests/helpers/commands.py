"""The commands run as a user runs them: ``python scripts/<name>.py overrides...`` from the repository
root, in a subprocess, or in this process (what ``scripts/<name>.py`` runs: ``frcnn.cli.<name>.command()``,
without a new interpreter's imports of torch and frcnn)."""

import functools
import importlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.configs import REPO


def run_script(script: str, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python scripts/<script> overrides...`` in a subprocess; assert that it exits 0."""
    command = [sys.executable, f"scripts/{script}", *overrides]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_in_process(
    script: str, *overrides: str, capsys, monkeypatch, cwd: Path = REPO, check: bool = True
) -> SimpleNamespace:
    """``python scripts/<script> overrides...`` run in this process from ``cwd``: its exit status
    (0 when the command returns), stdout and stderr (``capsys``'s), as ``subprocess.run`` gives them;
    with ``check``, assert that it exits 0. The run's log handlers are closed afterwards."""
    command = importlib.import_module(f"frcnn.cli.{script.removesuffix('.py')}").command
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, *overrides])
    capsys.readouterr()
    returncode = 0
    try:
        command()
    except SystemExit as exit_info:
        returncode = 0 if exit_info.code is None else exit_info.code
    finally:
        for handler in list(logging.getLogger().handlers):  # close the run's log file
            logging.getLogger().removeHandler(handler)
            handler.close()
    out, err = capsys.readouterr()
    assert not check or returncode == 0, err[-3000:]
    return SimpleNamespace(returncode=returncode, stdout=out, stderr=err)


@pytest.fixture
def in_process(capsys, monkeypatch):
    """``in_process(script, *overrides, cwd=REPO, check=True)``: :func:`run_in_process` with this test's
    ``capsys`` and ``monkeypatch``."""
    return functools.partial(run_in_process, capsys=capsys, monkeypatch=monkeypatch)


def logged_iterations(run_dir: Path) -> list[int]:
    """The iterations a training run has logged to ``run_dir/losses.jsonl``, in file order."""
    path = run_dir / "losses.jsonl"
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines()] if path.exists() else []


def start_training(run_dir: Path, *overrides: str, iterations: int = 2) -> subprocess.Popen:
    """``python scripts/train.py overrides...`` in the background, returned once it has logged
    ``iterations`` iterations to ``run_dir`` (or has ended, or 180 s passed)."""
    process = subprocess.Popen(
        [sys.executable, "scripts/train.py", *overrides],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while len(logged_iterations(run_dir)) < iterations and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    return process
