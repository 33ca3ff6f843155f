"""The commands run as a user runs them: ``python scripts/<name>.py overrides...`` from the repository root."""

import subprocess
import sys

from tests.helpers.configs import REPO


def run_script(script: str, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python scripts/<script> overrides...`` in a subprocess; assert that it exits 0."""
    command = [sys.executable, f"scripts/{script}", *overrides]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
