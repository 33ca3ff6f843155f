"""Evaluate a trained detector, or score an existing results file.

    python scripts/evaluate.py checkpoint=outputs/<run>/checkpoints/last.pt
    python scripts/evaluate.py checkpoint=... dataset.test_sets=[2007-test] model.roi_head.score_thresh=0.01
    python scripts/evaluate.py predictions=outputs/<run>/predictions.json
    python scripts/evaluate.py onnx=exported/model.onnx   # an exported model

Writes metrics.json (voc07, voc, coco; with checkpoint= on an annotated split also val_loss, the
training loss terms on it) and predictions.json in the run directory and logs the summary with the
per-class AP table. evaluation.coco_backend=pycocotools scores COCO with the reference COCOeval.
"""

import json
import logging
import sys
from pathlib import Path
from typing import NamedTuple

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.checkpoint.saved_config import checkpoint_run_config
from frcnn.cli.errors import run_command
from frcnn.cli.runtime_option import check_runtime, exported_detector, route_model_argument
from frcnn.config import config_dir
from frcnn.config.commands import check_evaluate_source
from frcnn.config.ranges import EVALUATE_RANGES, check_ranges
from frcnn.data import build_dataset, build_test_loader
from frcnn.evaluation import (
    DetectionEvaluator,
    add_pr_curves,
    format_metrics_table,
    load_predictions,
    log_metrics,
    run_inference,
    save_predictions,
    score_predictions,
    write_voc_devkit_results,
)
from frcnn.evaluation.class_subset import check_classes, model_for_dataset
from frcnn.evaluation.results_io import detections_from_predictions
from frcnn.evaluation.val_loss import has_annotations
from frcnn.utils.compile import compile_model
from frcnn.utils.device import autocast_dtype, resolve_device
from frcnn.utils.logs import setup_logging

log = logging.getLogger("evaluate")


class Evaluation(NamedTuple):
    dataset_cfg: DictConfig
    dataset: object  # frcnn.data.DetectionDataset
    predictions: list[dict]
    metrics: dict
    pr_curves: list  # ClassPR per class
    step: int  # the checkpoint's iteration (TensorBoard step)


def evaluate_checkpoint(cfg: DictConfig) -> Evaluation:
    """The checkpoint's model on the test split of its (possibly overridden) dataset."""
    checkpoint = load_checkpoint(cfg.checkpoint)
    dataset_cfg, model_cfg = checkpoint_run_config(cfg, checkpoint.config, HydraConfig.get().overrides.task)
    device = resolve_device(cfg.device.value)
    loader = build_test_loader(dataset_cfg, cfg.batch_size, cfg.num_workers, bucketed=cfg.compile)
    model = model_from_checkpoint(checkpoint, model_cfg, source=cfg.checkpoint)
    model = model_for_dataset(model, checkpoint.class_names, loader.dataset.class_names).to(device)
    if cfg.compile:
        compile_model(model, inference=True)
    log.info("evaluating %s on %d %s test images", cfg.checkpoint, len(loader.dataset), dataset_cfg.name)
    evaluator = DetectionEvaluator(loader.dataset, coco_backend=cfg.evaluation.coco_backend.value)
    # The RoI sampling of the validation loss is seeded as in the training run's evaluations.
    val_loss_seed = checkpoint.config.get("seed", 0) if has_annotations(loader.dataset) else None
    amp = autocast_dtype(cfg.amp or checkpoint.config.get("train", {}).get("amp"), device, key="amp")
    metrics = run_inference(model, loader, evaluator, device, amp=amp, val_loss_seed=val_loss_seed)
    return Evaluation(
        dataset_cfg, loader.dataset, evaluator.predictions(), metrics, evaluator.pr_curves, checkpoint.iteration
    )


def evaluate_exported(cfg: DictConfig) -> Evaluation:
    """The exported model (ONNX Runtime) on the test split of its checkpoint's dataset."""
    model, dataset_cfg = exported_detector(cfg, HydraConfig.get().overrides.task)
    loader = build_test_loader(dataset_cfg, cfg.batch_size, cfg.num_workers)
    check_classes(model.class_names, loader.dataset.class_names)
    log.info(
        "evaluating %s (ONNX Runtime) on %d %s test images", cfg.exported_model, len(loader.dataset), dataset_cfg.name
    )
    evaluator = DetectionEvaluator(loader.dataset)
    metrics = run_inference(model, loader, evaluator, "cpu")
    step = model.metadata.checkpoint.get("iteration") or 0
    return Evaluation(dataset_cfg, loader.dataset, evaluator.predictions(), metrics, evaluator.pr_curves, step)


def score_file(cfg: DictConfig) -> Evaluation:
    """A results file scored against the test split of cfg.dataset."""
    dataset = build_dataset(cfg.dataset, "test")
    predictions = load_predictions(cfg.predictions, cfg.invalid_predictions)
    log.info("scoring %d detections of %s on %d %s test images",
             len(predictions), cfg.predictions, len(dataset), cfg.dataset.name)  # fmt: skip
    metrics, curves = score_predictions(dataset, predictions, coco_backend=cfg.evaluation.coco_backend.value)
    return Evaluation(cfg.dataset, dataset, predictions, metrics, curves, 0)


@hydra.main(config_path=str(config_dir()), config_name="evaluate", version_base=None)
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    setup_logging(run_dir / "evaluate.log")
    check_evaluate_source(cfg)
    check_ranges(cfg, ranges=EVALUATE_RANGES)
    check_runtime(cfg, HydraConfig.get().overrides.task)
    if cfg.exported_model is not None:
        run = evaluate_exported(cfg)
    else:
        run = evaluate_checkpoint(cfg) if cfg.checkpoint else score_file(cfg)

    save_predictions(run_dir / "predictions.json", run.predictions)
    (run_dir / "metrics.json").write_text(json.dumps(run.metrics, indent=2))
    log.info("metrics:\n%s", format_metrics_table(run.metrics))
    log.info("wrote %s and %s", run_dir / "metrics.json", run_dir / "predictions.json")

    if cfg.voc_results_dir is not None:
        # "2007-test" -> comp4_det_test_<class>.txt, as the devkit names result files
        set_name = "_".join(split.rpartition("-")[2] for split in run.dataset_cfg.test_sets) or "test"
        dets = detections_from_predictions(run.predictions, run.dataset.image_ids, run.dataset.category_ids)
        directory = run_dir / cfg.voc_results_dir
        write_voc_devkit_results(directory, dets, run.dataset.image_ids, run.dataset.class_names, set_name)
        log.info("wrote VOC devkit result files comp4_det_%s_<class>.txt to %s", set_name, directory)
    if cfg.tensorboard_dir is not None:
        with SummaryWriter(cfg.tensorboard_dir) as writer:
            log_metrics(writer, run.metrics, run.step)
            add_pr_curves(writer, run.pr_curves, run.dataset.class_names, run.step)
        log.info("added metrics and PR curves at step %d to %s", run.step, cfg.tensorboard_dir)


def command() -> None:
    """``python scripts/evaluate.py`` and the ``frcnn-evaluate`` console command."""
    sys.argv = route_model_argument(sys.argv)
    run_command(main)


if __name__ == "__main__":
    command()
