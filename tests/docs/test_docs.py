"""Every command block of README.md and docs/*.md runs as written; README.md stays a short front page
and every relative link of the pages resolves.

How a block is checked (the markers are read by :mod:`tests.docs.blocks`):

- ```bash and ```python blocks are collected from every page, one test case per block, named
  ``page:line`` of its opening fence; a block repeating an earlier one (the README's own-data
  recipe on docs/own-data.md) is checked once. ```text blocks are output and layouts: not run.
- Unmarked blocks run as written: bash under ``bash -e -o pipefail``, Python in a fresh
  interpreter, each in its own copy of the workspace (:mod:`tests.docs.workspace`), a temporary
  folder that is not the repository, and must exit with status 0.
- ``<!-- docs-test: tiny -->`` adds ``debug=tiny train.max_iters=2`` to each ``scripts/train.py``
  command (a key the command sets itself is kept): a few iterations on a dozen 64-96 px images of
  the workspace's generated ``data/shapes_tiny``, no weight download.
- ``<!-- docs-test: config-only -->`` composes each command's config with its overrides (group
  choices, keys, types and, for training, value ranges; a ``-m`` sweep is composed for each
  value) and runs nothing: for full-size datasets, GPUs, several nodes.
- ``<!-- docs-test: expect-rc N -->``: the block must exit with status N.
- ``<!-- docs-test: skip: REASON -->``: not run; the reason is required and shown by ``pytest -rs``.

Placeholders: ``outputs/<run>`` in a block stands for a training run of the reader's; the test puts
a ``debug=tiny`` run there (trained once per session by ``scripts/train.py debug=tiny``, with
checkpoints ``last.pt``, ``best.pt``, ``model_0000003.pt``, ``model_0000006.pt``), and ``exported/``
holds its ONNX export, so evaluate, predict, export and resume blocks run against it. ``photos/``
and ``photo.jpg`` are shapes test images; ``data/mydata`` and ``data/mydata_coco`` hold a small
cat/dog/bird dataset in the layouts of docs/own-data.md.

The config-only and page checks are fast; the blocks that run are marked slow.
"""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from frcnn.cli.runtime_option import route_model_argument
from tests.docs.blocks import (
    REPO,
    Block,
    distinct_blocks,
    heading_anchors,
    pages,
    relative_links,
    script_commands,
    with_placeholders,
    with_tiny_overrides,
)
from tests.docs.workspace import build_workspace, command_environment, copy_workspace
from tests.helpers.configs import compose_config

README_MAX_BYTES = 12 * 1024
BLOCKS = distinct_blocks(pages())
RUN_BLOCKS = [block for block in BLOCKS if not block.config_only]
CONFIG_BLOCKS = [block for block in BLOCKS if block.config_only]


def own_data_trained(run: str) -> Callable:
    """The own-data recipe into outputs/``run``: trained on cat/dog/bird, predicted, no preset warning."""

    def check(workspace: Path, result: subprocess.CompletedProcess) -> None:
        metrics = json.loads((workspace / "outputs" / run / "metrics.json").read_text())
        assert set(metrics["voc07"]["AP"]) == {"cat", "dog", "bird"}
        assert (workspace / "outputs" / run / "detections" / "predictions.json").is_file()
        assert "experiment=shapes_cpu" not in result.stdout + result.stderr  # the shapes preset's warning

    return check


def detector_detected(workspace: Path, result: subprocess.CompletedProcess) -> None:
    """The Python API's Detector example: it trained outputs/tiny and printed one line per image."""
    assert (workspace / "outputs" / "tiny" / "checkpoints" / "last.pt").is_file()
    assert len([line for line in result.stdout.splitlines() if line.startswith("torch.Size([")]) == 2


# Blocks whose outcome is checked beyond their exit status: a text the block holds -> the check.
OUTCOMES = {
    "dataset=voc dataset.root=data/mydata ": own_data_trained("mydata"),
    "dataset=coco dataset.root=data/mydata_coco ": own_data_trained("mydata_coco"),
    'frcnn.Detector.from_checkpoint("outputs/tiny/': detector_detected,
}


def block_params(blocks: list[Block]) -> list:
    return [pytest.param(block, id=block.id, marks=[pytest.mark.skip(reason=f"{block.id}: {block.skip}")]
                         if block.skip else []) for block in blocks]  # fmt: skip


@pytest.fixture(scope="session")
def docs_workspace(tmp_path_factory) -> Path:
    """The template workspace of :mod:`tests.docs.workspace`, built once per session."""
    return build_workspace(tmp_path_factory.mktemp("docs") / "workspace")


def run_block(block: Block, workspace: Path) -> subprocess.CompletedProcess:
    """Run ``block`` (placeholders filled, tiny overrides added) in ``workspace``."""
    text = with_placeholders(block.text)
    if block.tiny:
        text = with_tiny_overrides(text)
    if block.language == "python":
        script = workspace / "docs_block.py"
        script.write_text(text)
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", text]
    return subprocess.run(command, cwd=workspace, env=command_environment(), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("block", block_params(RUN_BLOCKS))
def test_block_runs_as_written(block, docs_workspace, tmp_path):
    workspace = copy_workspace(docs_workspace, tmp_path / "workspace")
    result = run_block(block, workspace)
    assert result.returncode == block.expect_rc, (
        f"{block.id} exited with {result.returncode}, expected {block.expect_rc}\n"
        f"{with_placeholders(block.text)}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    )
    for text, check in OUTCOMES.items():
        if text in block.text:
            check(workspace, result)


def compose_command(program: str, arguments: list[str]) -> list[DictConfig]:
    """The configs ``scripts/<program>.py arguments`` runs with: one, or one per job of a ``-m`` sweep."""
    __import__(f"frcnn.cli.{program}")  # registers the program's config schema
    overrides, sweep, flag_value = [], False, False
    for argument in arguments:
        if flag_value:  # the value of --cfg (job, hydra, all)
            flag_value = False
        elif argument in ("-m", "--multirun"):
            sweep = True
        elif argument in ("-c", "--cfg"):
            flag_value = True
        elif argument.startswith("-"):
            raise ValueError(f"{program}.py: config-only does not know the flag {argument}")
        else:
            overrides.append(argument)
    if program in ("evaluate", "predict"):
        overrides = route_model_argument(overrides)
    jobs = [[]]
    for override in overrides:  # with -m, key=a,b is one job per value, as Hydra's basic sweeper runs it
        key, _, values = override.partition("=")
        choices = values.split(",") if sweep and "," in values and not values.startswith("[") else [values]
        jobs = [[*job, f"{key}={value}" if "=" in override else override] for job in jobs for value in choices]
    return [compose_config(program, *job) for job in jobs]


@pytest.mark.parametrize("block", block_params(CONFIG_BLOCKS))
def test_config_only_block_composes(block):
    for program, arguments in script_commands(with_placeholders(block.text)):
        assert compose_command(program, arguments), f"{block.id}: {program}.py composed no config"


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_point_to_existing_files_and_headings(page):
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.relative_to(REPO)}: the link {target} points to no file"
        if anchor and file.suffix == ".md":
            assert anchor in heading_anchors(file), f"{page.relative_to(REPO)}: the link {target} names no heading"


def test_readme_is_a_short_front_page():
    size = len((REPO / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail to a docs/ page"


def test_every_outcome_check_has_its_block():
    for text in OUTCOMES:
        assert any(text in block.text for block in RUN_BLOCKS), f"no documentation block holds {text!r} any more"
