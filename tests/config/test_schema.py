"""Config composition: every group option and experiment, precedence, and schema errors."""

import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from frcnn.config import preset_warning
from frcnn.engine.optim import scaled_lr
from frcnn.engine.trainer import check_train_config
from frcnn.evaluation.best_metric import is_better, metric_value
from tests.helpers.configs import CONFIGS, REPO, compose_train


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["dataset", "model", "optimizer", "schedule", "experiment", "debug"])
def test_every_group_option_composes(group):
    options = _options(group)
    assert options, f"configs/{group} is empty"
    for option in options:
        cfg = compose_train(f"{group}={option}")
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # every value is set


def test_group_options_without_experiment():
    cfg = compose_train("~experiment", "optimizer=adamw", "schedule=cosine")
    assert cfg.model.backbone.depth == 50 and cfg.model.backbone.weights == "imagenet"
    assert cfg.optimizer.name.value == "adamw" and cfg.schedule.name.value == "cosine"


def test_default_is_the_cpu_shapes_preset():
    cfg = compose_train()
    assert cfg.dataset.name == "shapes"
    assert cfg.model.backbone.depth == 18 and cfg.model.backbone.weights is None
    assert cfg.dataset.test_min_size == 128
    # The augmentation ablation's winner (docs/parity.md): multi-scale training around the test size.
    assert cfg.dataset.augmentation.value == "multiscale" and list(cfg.dataset.min_size) == [96, 112, 128, 144, 160]


@pytest.mark.parametrize("experiment", ["voc07_r50_c4", "voc0712_r50_c4", "coco_r50_c4"])
def test_full_scale_experiments_keep_resnet50(experiment):
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.model.backbone.depth == 50 and cfg.model.backbone.weights == "imagenet"
    assert cfg.dataset.name == ("coco" if experiment.startswith("coco") else "voc")


def test_precedence_experiment_then_debug_then_command_line():
    cfg = compose_train("debug=tiny")
    assert cfg.train.max_iters == 6 and cfg.model.backbone.depth == 18  # debug over experiment
    assert compose_train("debug=tiny", "train.max_iters=3").train.max_iters == 3  # CLI over all
    assert compose_train("model.backbone.depth=34").model.backbone.depth == 34  # CLI over experiment


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_iter=5", "max_iter"),  # misspelled key
        ("train.max_iters=five", "max_iters"),  # wrong type
        ("train.amp=fp8", "amp"),  # not an allowed value
        ("optimizer.base_lr=fast", "base_lr"),
        ("evaluation.coco_backend=cocoapi", "coco_backend"),
    ],
)
def test_schema_rejects_bad_overrides(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_train(override)
    assert key in str(info.value) + str(info.value.__cause__)


def test_schema_rejects_unknown_key_in_a_config_file(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain:\n  batchsize: 4\n")
    with pytest.raises(Exception, match="batchsize"):
        with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
            compose("train", overrides=[f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"])


def test_cli_rejects_misspelled_key_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/train.py", "train.max_iter=5", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "max_iter" in result.stderr
    assert not (tmp_path / "run").exists()


def test_cli_cfg_job_prints_resolved_config():
    result = subprocess.run(
        [sys.executable, "scripts/train.py", "--cfg", "job", "train.batch_size=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert cfg.train.batch_size == 3 and cfg.model.backbone.depth == 18


def test_run_dirs_have_microseconds():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose("train", return_hydra_config=True)
    assert re.search(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}$", cfg.hydra.run.dir)
    assert re.search(r"multirun/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}$", cfg.hydra.sweep.dir)


def test_preset_warning():
    assert preset_warning("shapes_cpu", "shapes") is None
    assert preset_warning(None, "voc") is None
    assert preset_warning("voc0712_r50_c4", "voc") is None
    assert preset_warning("custom_cpu", "voc") is None
    message = preset_warning("shapes_cpu", "voc")
    assert "experiment=custom_cpu" in message and "experiment=voc0712_r50_c4" in message


def test_default_run_trains_adamw_at_2e_3_with_batch_8():
    cfg = compose_train()
    assert cfg.optimizer.name.value == "adamw" and cfg.train.batch_size == 8
    assert scaled_lr(cfg.optimizer.base_lr, cfg.optimizer.reference_batch_size, 8) == pytest.approx(0.002)


@pytest.mark.parametrize("experiment", ["shapes_cpu", "custom_cpu"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_each_optimizer_group_keeps_its_own_rate_in_the_small_presets(experiment, optimizer):
    group = OmegaConf.load(CONFIGS / "optimizer" / f"{optimizer}.yaml")
    cfg = compose_train(f"experiment={experiment}", f"optimizer={optimizer}")
    assert cfg.optimizer.base_lr == group.base_lr
    assert cfg.optimizer.reference_batch_size == group.reference_batch_size
    assert cfg.optimizer.weight_decay == group.weight_decay


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.checkpoint_period=0", "train.checkpoint_period"),
        ("train.eval_period=-1", "train.eval_period"),
        ("optimizer.base_lr=0", "optimizer.base_lr"),
        ("train.best_metric=voc07/AP50", "train.best_metric"),
        ("train.best_metric=mAP", "train.best_metric"),
    ],
)
def test_value_checks_name_the_key(override, key):
    with pytest.raises(ValueError, match=key):
        check_train_config(compose_train(override))


@pytest.mark.parametrize("experiment", ["coco_r50_fpn", "voc0712_r50_fpn", "finetune_r50_fpn"])
def test_fpn_experiments(experiment):
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.model.architecture == "fpn" and cfg.model.backbone.depth == 50
    assert cfg.model.anchors.stride == 4 and cfg.model.roi_head.roi_size == 7
    if experiment == "finetune_r50_fpn":  # starts from COCO: no ImageNet download
        assert cfg.model.weights == "torchvision:fasterrcnn_resnet50_fpn" and cfg.model.backbone.weights is None
    else:
        assert cfg.model.backbone.weights == "imagenet" and cfg.optimizer.base_lr == 0.02


def test_evaluation_and_best_metric_keys():
    cfg = compose_train()
    assert cfg.evaluation.coco_backend.value == "faster_coco_eval"
    assert cfg.train.val_loss and cfg.train.best_metric == "voc07/mAP"
    assert compose_train("evaluation.coco_backend=pycocotools").evaluation.coco_backend.value == "pycocotools"
    for name in ("coco/AP", "voc/mAP", "val_loss/total", "val_loss/roi_cls"):
        check_train_config(compose_train(f"train.best_metric={name}"))
    with pytest.raises(ValueError, match="train.val_loss=false"):
        check_train_config(compose_train("train.best_metric=val_loss/total", "train.val_loss=false"))


def test_best_metric_direction():
    assert is_better(0.5, None, "voc07/mAP") and is_better(2.0, None, "val_loss/total")
    assert is_better(0.6, 0.5, "coco/AP") and not is_better(0.4, 0.5, "voc07/mAP")
    assert is_better(0.9, 1.0, "val_loss/total") and not is_better(1.1, 1.0, "val_loss/rpn_cls")
    metrics = {"voc07": {"mAP": 0.25}, "val_loss": {"total": 1.5}}
    assert metric_value(metrics, "voc07/mAP") == 0.25 and metric_value(metrics, "val_loss/total") == 1.5
