"""Every command block of README.md and docs/*.md runs as written; README.md stays a short front page
and every relative link of the pages resolves.

How a block is checked (the markers are read by :mod:`tests.docs.blocks`):

- ```bash and ```python blocks are collected from every page, one test case per block, named
  ``page:line`` of its opening fence; a block repeating an earlier one (the README's own-data
  recipe on docs/own-data.md) is checked once. ```text blocks are output and layouts: not run.
- Unmarked blocks run as written: bash under ``bash -e -o pipefail``, Python in a fresh
  interpreter, each in its own copy of the workspace (:mod:`tests.docs.workspace`), a temporary
  folder that is not the repository, and must exit with status 0.
- ``<!-- docs-test: tiny -->`` adds ``debug=tiny train.max_iters=2 train.keep_checkpoints=0`` to each
  ``scripts/train.py`` command (a key the command sets itself is kept): two iterations on a dozen
  64-96 px images of the workspace's generated ``data/shapes_tiny``, no weight download, no periodic
  checkpoint copies.
- ``<!-- docs-test: config-only -->`` composes each command's config with its overrides (group
  choices, keys, types and, for training, value ranges; a ``-m`` sweep is composed for each
  value), requires every mandatory ``???`` value to be given (``OmegaConf.missing_keys``), and
  runs nothing: for full-size datasets, GPUs, several nodes. A command whose ``dataset.root`` is one
  of the workspace's own datasets (``data/mydata``, ``data/mydata_coco``, laid out as
  docs/own-data.md lays them out) must read it as configured: each split it uses is built from
  the workspace's copy (its sets or annotation files, image folder and classes), as the command
  would build it.
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

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from frcnn.cli.runtime_option import route_model_argument
from frcnn.data.build import build_dataset
from tests.docs.blocks import (
    REPO,
    Block,
    config_jobs,
    distinct_blocks,
    heading_anchors,
    override_key,
    pages,
    parse_directives,
    relative_links,
    script_commands,
    with_placeholders,
    with_tiny_overrides,
)
from tests.docs.workspace import OWN_DATASETS, build_workspace, command_environment, copy_workspace, write_own_data
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


def analysis_written(workspace: Path, result: subprocess.CompletedProcess) -> None:
    """docs/analysis.md's analyze.py example: analysis.json, the report and the printed headline."""
    run = workspace / "outputs" / "analysis"
    analysis = json.loads((run / "analysis.json").read_text())
    assert set(analysis["tide"]) == {"ap", "cls", "loc", "both", "dupe", "bkg", "miss", "fp", "fn"}
    assert (run / "report" / "index.html").is_file() and (run / "report" / "tide.png").is_file()
    assert "TIDE dAP" in result.stdout + result.stderr


# Blocks whose outcome is checked beyond their exit status: a text the block holds -> the check.
OUTCOMES = {
    "dataset=voc dataset.root=data/mydata ": own_data_trained("mydata"),
    "dataset=coco dataset.root=data/mydata_coco ": own_data_trained("mydata_coco"),
    "dataset=auto dataset.root=data/mydata ": own_data_trained("mydata"),
    "dataset=auto dataset.root=data/mydata_yolo ": own_data_trained("mydata_yolo"),
    'frcnn.Detector.from_checkpoint("outputs/tiny/': detector_detected,
    "scripts/analyze.py checkpoint=outputs/<run>/checkpoints/last.pt hydra.run.dir=outputs/analysis": analysis_written,
}


def block_params(blocks: list[Block]) -> list:
    """One test case per block, named ``page:line``; a ``skip`` block is skipped with its reason."""
    params = []
    for block in blocks:
        marks = [pytest.mark.skip(reason=f"{block.id}: {block.skip}")] if block.skip else []
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


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
    return subprocess.run(
        command, cwd=workspace, env=command_environment(), capture_output=True, text=True, timeout=600
    )


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
    importlib.import_module(f"frcnn.cli.{program}")  # registers the program's config schema
    jobs = config_jobs(arguments)
    if program in ("evaluate", "analyze", "predict"):
        jobs = [route_model_argument(job) for job in jobs]
    return [compose_config(program, *job) for job in jobs]


@pytest.fixture(scope="session")
def own_data(tmp_path_factory) -> Path:
    """A folder holding only the workspace's own datasets (``data/mydata``, ``data/mydata_coco``)."""
    root = tmp_path_factory.mktemp("docs_data")
    write_own_data(root)
    return root


def dataset_splits(program: str, cfg: DictConfig, arguments: list[str]) -> list[str]:
    """The splits of ``cfg.dataset`` that ``scripts/<program>.py arguments`` reads: training both,
    check_dataset its ``splits``, evaluate the test split when the command line sets the dataset
    (otherwise the checkpoint's own config names it); the benchmark's shapes set is generated."""
    if program == "train":
        return ["train", "test"]
    if program == "check_dataset":
        return list(cfg.splits)
    sets_dataset = any(override_key(argument).startswith("dataset") for argument in arguments)
    if program in ("evaluate", "analyze") and sets_dataset:
        return ["test"]
    return []


def check_own_data(block: Block, program: str, arguments: list[str], cfg: DictConfig, own_data: Path) -> None:
    """When ``cfg.dataset.root`` is one of the workspace's own datasets, build each split the
    command reads from the copy under ``own_data``: a missing set or file, or a class the data has
    and ``dataset.classes`` lacks, fails as it would fail the command."""
    splits = dataset_splits(program, cfg, arguments)
    if not splits or str(cfg.dataset.root).rstrip("/") not in OWN_DATASETS:
        return
    dataset = OmegaConf.merge(cfg.dataset, {"root": str(own_data / cfg.dataset.root)})
    for split in splits:
        try:
            built = build_dataset(dataset, split)
        except Exception as error:
            raise AssertionError(
                f"{block.id}: {program}.py {' '.join(arguments)}\ncannot read the {split} split of "
                f"{cfg.dataset.root} (laid out as docs/own-data.md lays it out): {error}"
            ) from error
        assert len(built) > 0, f"{block.id}: {program}.py reads no {split} image from {cfg.dataset.root}"


@pytest.mark.parametrize("block", block_params(CONFIG_BLOCKS))
def test_config_only_block_composes(block, own_data):
    for program, arguments in script_commands(with_placeholders(block.text)):
        configs = compose_command(program, arguments)
        assert configs, f"{block.id}: {program}.py composed no config"
        for cfg in configs:
            missing = sorted(OmegaConf.missing_keys(cfg))
            assert not missing, (
                f"{block.id}: {program}.py {' '.join(arguments)}\nleaves mandatory values unset: "
                f"{', '.join(missing)} (the command would stop with exit code 2)"
            )
            check_own_data(block, program, arguments, cfg, own_data)


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


def test_directives_are_read_and_checked():
    assert parse_directives(["tiny", "expect-rc 2"], "page:1") == {"tiny": True, "expect_rc": 2}
    assert parse_directives(["skip: needs a GPU"], "page:1") == {"skip": "needs a GPU"}
    for wrong in (["skip:"], ["expect-rc two"], ["tiney"]):
        with pytest.raises(ValueError, match="page:1"):
            parse_directives(wrong, "page:1")


def test_tiny_overrides_keep_the_commands_own_keys():
    text = "python scripts/train.py train.max_iters=8  # longer\npython scripts/predict.py input=a output=b\n"
    assert with_tiny_overrides(text) == (
        "python scripts/train.py train.max_iters=8 debug=tiny train.keep_checkpoints=0 # longer\n"
        "python scripts/predict.py input=a output=b\n"
    )


def test_config_only_checks_catch_an_unset_value_and_a_layout_that_does_not_fit(own_data):
    block = Block(REPO / "README.md", 1, "bash", "")
    (exported,) = compose_command("export", ["checkpoint=outputs/run/checkpoints/last.pt"])
    assert OmegaConf.missing_keys(exported) == {"output"}
    voc_defaults = ["experiment=custom_cpu", "dataset=voc", "dataset.root=data/mydata"]
    voc_defaults.append("dataset.classes=[cat,dog,bird]")
    (cfg,) = compose_command("train", voc_defaults)
    with pytest.raises(AssertionError, match="cannot read the train split"):  # VOC's 2007-trainval, 2012-trainval
        check_own_data(block, "train", voc_defaults, cfg, own_data)
    fitting = [*voc_defaults, "dataset.train_sets=[train]", "dataset.test_sets=[val]"]
    (cfg,) = compose_command("train", fitting)
    check_own_data(block, "train", fitting, cfg, own_data)
    two_classes = [*fitting, "dataset.classes=[cat,dog]"]  # the data also has birds
    (cfg,) = compose_command("train", two_classes)
    with pytest.raises(AssertionError, match="cannot read"):
        check_own_data(block, "train", two_classes, cfg, own_data)


def test_a_sweep_is_composed_once_per_value_and_flags_are_dropped():
    swept = config_jobs(["-m", "optimizer=sgd,adamw", "seed=1"])
    assert swept == [["optimizer=sgd", "seed=1"], ["optimizer=adamw", "seed=1"]]
    flagged = config_jobs(["--cfg", "job", "~experiment", "dataset.classes=[a,b]"])
    assert flagged == [["~experiment", "dataset.classes=[a,b]"]]
