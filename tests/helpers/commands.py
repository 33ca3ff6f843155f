"""The commands run as a user runs them: ``python scripts/<name>.py overrides...`` from the repository root."""

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.configs import REPO


def run_script(script: str, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python scripts/<script> overrides...`` in a subprocess; assert that it exits 0."""
    command = [sys.executable, f"scripts/{script}", *overrides]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


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
