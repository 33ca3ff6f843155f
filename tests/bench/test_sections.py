"""``frcnn.bench.sections.run_sections``: each section's config node reaches its entry function and
its result lands under its key of benchmark.json (tiny sizes); the accuracy section's progress."""

import json
import subprocess
import sys

import pytest
import torch
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException

import frcnn.bench.config  # noqa: F401 (registers benchmark_schema, which configs/benchmark.yaml names)
from frcnn.bench import sections
from frcnn.bench.machine import cpu_model
from frcnn.bench.sections import run_sections
from frcnn.config import config_dir
from tests.helpers.configs import REPO, compose_config

TINY_DATA = ("dataset.min_size=[64]", "dataset.test_min_size=64", "dataset.max_size=96", "dataset.num_workers=0",
             "dataset.shapes.num_train=4", "dataset.shapes.num_test=4", "dataset.shapes.min_image_size=64",
             "dataset.shapes.max_image_size=96", "model.backbone.depth=18", "model.rpn.post_nms_top_n_test=10",
             "data.batch_size=2", "data.num_batches=1", "data.index_images=30", "eval.num_images=10",
             "eval.dets_per_image=5", "eval.num_classes=3", "val_loss.batch_size=2", "val_loss.num_batches=1",
             "val_loss.repeats=1")  # fmt: skip


def _never(result):
    raise AssertionError("only the accuracy section writes partial results")


def test_unknown_sections_are_refused_by_name():
    # The sections are the schema's Enum: an unknown one is refused where the command line is composed.
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("benchmark", "sections=[model,speed]")
    expected = "expected one of [model, data, eval, analysis, val_loss, export, zoo, accuracy]"
    assert f"Invalid value 'speed', {expected}" in str(info.value.__cause__)


def test_each_section_lands_under_its_key(tmp_path):
    root = f"dataset.root={tmp_path / 'shapes'}"
    cfg = compose_config("benchmark", "sections=[val_loss,eval,data]", root, *TINY_DATA)
    result = run_sections(cfg, torch.device("cpu"), tmp_path, _never)
    assert list(result) == ["machine", "data", "eval", "val_loss"]  # SECTIONS order, whatever the command line's
    assert result["machine"]["cpu_model"] == cpu_model() and result["machine"]["threads"] == torch.get_num_threads()
    assert result["data"]["num_batches"] == 1 and result["data"]["batch_size"] == 2
    assert result["eval"]["num_detections"] == 50 and result["eval"]["num_classes"] == 3
    assert result["val_loss"]["images"] == 2 and result["val_loss"]["device"] == "cpu"


def test_the_accuracy_section_trains_composed_configs_and_writes_its_progress(tmp_path, monkeypatch):
    overrides = ["sections=[eval,accuracy]", "eval.num_images=10", "eval.dets_per_image=5", "accuracy.seeds=[4]",
                 'accuracy.overrides=["train.max_iters=7"]', "accuracy.device=cpu"]  # fmt: skip
    cfg = compose_config("benchmark", *overrides)
    trained = []

    def parity(compose, seeds, variants, reference, run_dir, on_progress):
        trained.append(compose(["seed=4"]))
        assert (seeds, variants, reference, run_dir) == ([4], {"ours": []}, True, tmp_path / "accuracy")
        on_progress({"runs": {"ours": {}}})
        return {"map_ratio": 1.0}

    monkeypatch.setattr(sections, "benchmark_training_parity", parity)
    written = []
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):  # as inside scripts/benchmark.py
        result = run_sections(cfg, torch.device("cpu"), tmp_path, written.append)
    (train_cfg,) = trained
    assert train_cfg.train.max_iters == 7 and train_cfg.seed == 4 and train_cfg.train.val_loss is False
    assert train_cfg.device.value == "cpu" and train_cfg.train.batch_size == 8  # experiment shapes_cpu
    assert written == [{"machine": result["machine"], "eval": result["eval"], "accuracy": {"runs": {"ours": {}}}}]
    assert result["accuracy"] == {"map_ratio": 1.0, "experiment": "shapes_cpu"}


@pytest.mark.slow
def test_the_command_writes_every_section_to_benchmark_json(tmp_path):
    command = [sys.executable, "scripts/benchmark.py", "sections=[data,eval,val_loss,export]", "device=cpu",
               f"hydra.run.dir={tmp_path / 'run'}", f"dataset.root={tmp_path / 'shapes'}", *TINY_DATA,
               "export.image_size=[64,96]", "export.batch_size=2", "export.num_classes=3", "export.warmup_iters=0",
               "export.timed_iters=1"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert list(report) == ["machine", "data", "eval", "val_loss", "export", "onnx_infer_ratio"]
    assert report["onnx_infer_ratio"] == report["export"]["onnx_infer_ratio"] > 0
    assert report["eval"]["coco_speedup"] > 0 and report["export"]["image_size"] == [64, 96]
