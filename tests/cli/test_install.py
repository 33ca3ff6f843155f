"""Installed with pip, editable (as requirements.txt does) or not, frcnn gives working console
commands: the configs are found and every command runs from a folder outside the repository."""

import fnmatch
import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMMANDS = {
    "frcnn-train",
    "frcnn-evaluate",
    "frcnn-analyze",
    "frcnn-predict",
    "frcnn-check-dataset",
    "frcnn-convert-dataset",
    "frcnn-export",
    "frcnn-benchmark",
}


def test_every_subpackage_and_config_ships_in_the_wheel():
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "frcnn").rglob("*.py")}
    assert found - set(setuptools["packages"]) == set(), "add these packages to [tool.setuptools] packages"
    configs = REPO / setuptools["package-dir"]["frcnn.configs"]
    patterns = setuptools["package-data"]["frcnn.configs"]
    unshipped = [
        str(path.relative_to(configs))
        for path in configs.rglob("*.yaml")
        if not any(fnmatch.fnmatch(str(path.relative_to(configs)), pattern) for pattern in patterns)
    ]
    assert (configs / "train.yaml").is_file() and unshipped == [], "add a pattern to frcnn.configs package-data"


def test_every_console_command_is_a_frcnn_cli_command():
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == COMMANDS
    for name, target in scripts.items():
        module_name, function = target.split(":")
        assert module_name.startswith("frcnn.cli."), name
        assert callable(getattr(importlib.import_module(module_name), function)), target


def _copy_source(destination: Path) -> Path:
    """The files pip builds frcnn from, copied so that the install is not the system's own editable one
    (whose frcnn/__init__.py is the repository's) and leaves no build folder in the repository."""
    destination.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("frcnn", "configs"):
        shutil.copytree(REPO / name, destination / name, ignore=ignore)
    return destination


def _install(tmp_path: Path, editable: bool) -> tuple[Path, dict[str, str]]:
    """A fresh virtualenv with frcnn installed from a copy of the source, and an environment that runs its
    commands. torch & co. come from this interpreter's site-packages: nothing is downloaded."""
    source = _copy_source(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    target = ["-e", str(source)] if editable else [str(source)]
    installed = subprocess.run([*pip, *target], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    return venv, {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}


@pytest.mark.slow
@pytest.mark.parametrize("editable", [True, False], ids=["editable", "regular"])
def test_pip_install_gives_working_console_commands(tmp_path, editable):
    venv, env = _install(tmp_path, editable)
    outside = tmp_path / "elsewhere"  # neither the repository nor the copied source
    outside.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=outside, env=env, capture_output=True, text=True, timeout=300)

    loaded = run("python", "-c", "import frcnn, frcnn.config; print(frcnn.__file__); print(frcnn.config.config_dir())")
    assert loaded.returncode == 0, loaded.stderr
    package, configs = (Path(line).resolve() for line in loaded.stdout.splitlines())
    # the venv's frcnn shadows the system site-packages' editable install of the repository
    if editable:
        source = (tmp_path / "source").resolve()
        assert package == source / "frcnn" / "__init__.py" and configs == source / "configs", loaded.stdout
    else:
        assert package.is_relative_to(venv.resolve()) and configs == package.parent / "configs", loaded.stdout

    train = run("frcnn-train", "--cfg", "job", "experiment=shapes_cpu", "train.max_iters=7")
    assert train.returncode == 0, train.stderr
    assert "max_iters: 7" in train.stdout and "depth: 18" in train.stdout
    for command, key in (
        ("frcnn-evaluate", "predictions:"),
        ("frcnn-check-dataset", "splits:"),
        ("frcnn-benchmark", "sections:"),
    ):
        result = run(command, "--cfg", "job")
        assert result.returncode == 0, result.stderr
        assert "dataset:" in result.stdout and key in result.stdout, result.stdout
    assert "export is powered by Hydra" in run("frcnn-export", "--help").stdout
    missing = run("frcnn-predict", "checkpoint=a.pt", "input=x")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "frcnn-predict: error: output is required: add output=VALUE to the command line"
