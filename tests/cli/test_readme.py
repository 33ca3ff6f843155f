"""The README's Python snippet, run verbatim from a folder outside the repository."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def readme_python_snippets() -> list[str]:
    """The ```python blocks of README.md's "Python API" section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_readme_python_snippet_runs_from_any_directory(tmp_path):
    snippet = next(s for s in readme_python_snippets() if "frcnn.Detector" in s)
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith("torch.Size([")]
    assert len(printed) == 2
    assert (tmp_path / "outputs" / "tiny" / "checkpoints" / "last.pt").is_file()
