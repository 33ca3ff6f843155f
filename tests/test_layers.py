"""The package keeps its layers (the import-linter contract in pyproject.toml) and its light entry
points: importing frcnn or its models loads neither the training engine, TensorBoard nor the COCO tools."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_every_contract():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    lint_imports = shutil.which("lint-imports")
    assert lint_imports is not None, "lint-imports not found: pip install -r requirements.txt"
    result = subprocess.run([lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"Contracts: (\d+) kept, (\d+) broken\.", result.stdout)
    assert summary is not None and summary.groups() == (str(len(contracts)), "0"), result.stdout


HEAVY = ("frcnn.engine", "torch.utils.tensorboard", "tensorboard", "pycocotools", "faster_coco_eval")


@pytest.mark.parametrize("statement", ["import frcnn", "from frcnn.models import build_model"])
def test_light_imports_leave_the_engine_tensorboard_and_coco_tools_unloaded(statement):
    # a fresh interpreter: this one has loaded everything the other tests use
    probe = (
        f"import sys\n{statement}\nheavy = sys.argv[1:]\n"
        "print(*sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *HEAVY], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"{statement} loads {result.stdout}"
