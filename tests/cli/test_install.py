"""``pip install .`` gives a working package: configs inside it and the console commands."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_subpackage_ships_in_the_wheel():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "frcnn").rglob("*.py")}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    commands = pyproject["project"]["scripts"]
    assert set(commands) == {"frcnn-train", "frcnn-evaluate", "frcnn-predict", "frcnn-check-dataset", "frcnn-export"}
    for target in commands.values():
        script = target.split(":")[0].removeprefix("frcnn.scripts.")
        assert (REPO / "scripts" / f"{script}.py").is_file()


@pytest.mark.slow
def test_pip_install_gives_working_console_commands(tmp_path):
    venv = tmp_path / "venv"
    # the dependencies (torch & co.) come from this interpreter's site-packages: nothing to download
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
                   check=True, cwd=tmp_path, capture_output=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    installed = subprocess.run([str(python), "-c", "import frcnn; print(frcnn.config.config_dir())"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(installed.strip()).is_relative_to(venv), installed  # the installed copy, not the checkout

    def run(*args):
        return subprocess.run(list(args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    train = run("frcnn-train", "--cfg", "job", "experiment=shapes_cpu", "train.max_iters=7")
    assert train.returncode == 0, train.stderr
    assert "max_iters: 7" in train.stdout and "depth: 18" in train.stdout
    for command in ("frcnn-evaluate", "frcnn-check-dataset"):
        result = run(command, "--cfg", "job")
        assert result.returncode == 0 and "dataset:" in result.stdout, result.stderr
    assert "predict is powered by Hydra" in run("frcnn-predict", "--help").stdout
    missing = run("frcnn-predict", "checkpoint=a.pt", "input=x")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "frcnn-predict: error: output is required: add output=VALUE to the command line"
