"""Evaluate a trained detector, or score an existing results file.

    python scripts/evaluate.py checkpoint=outputs/<run>/checkpoints/last.pt
    python scripts/evaluate.py checkpoint=... dataset.test_sets=[2007-test] model.roi_head.score_thresh=0.01
    python scripts/evaluate.py predictions=outputs/<run>/predictions.json
    python scripts/evaluate.py onnx=exported/model.onnx   # an exported model
    python scripts/evaluate.py checkpoint=... analysis=true   # + analysis.json and report/ (scripts/analyze.py)

Writes metrics.json (voc07, voc, coco, coco_per_class; with checkpoint= on an annotated split also
val_loss, the training loss terms on it) and predictions.json in the run directory and logs the
summary with the per-class AP table. evaluation.coco_backend=pycocotools scores COCO with the
reference COCOeval. With analysis=true it also writes analysis.json and report/index.html (see
frcnn.evaluation.analysis) and adds their summary to metrics.json as ``analysis``.
"""

import json
import logging
import sys
import time
from pathlib import Path
from typing import NamedTuple

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from frcnn.cli.errors import run_command
from frcnn.cli.runtime_option import inference_model, route_model_argument
from frcnn.config import config_dir
from frcnn.config.commands import EvaluateConfig, check_evaluate_source
from frcnn.data import build_dataset, build_test_loader
from frcnn.data.config import DatasetConfig
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
from frcnn.evaluation.analysis import analyze, draw_worst_images, format_analysis_table, metrics_summary
from frcnn.evaluation.class_subset import check_classes, model_for_dataset
from frcnn.evaluation.report import write_report
from frcnn.evaluation.results_io import detections_from_predictions
from frcnn.evaluation.val_loss import has_annotations
from frcnn.utils.device import autocast_dtype
from frcnn.utils.files import write_atomic
from frcnn.utils.logs import setup_logging
from frcnn.utils.settings import typed

log = logging.getLogger("evaluate")


class Evaluation(NamedTuple):
    dataset_cfg: DatasetConfig
    dataset: object  # frcnn.data.DetectionDataset
    predictions: list[dict]
    metrics: dict
    pr_curves: list  # ClassPR per class
    step: int  # the checkpoint's iteration (TensorBoard step)


def evaluate_model(cfg: EvaluateConfig) -> Evaluation:
    """The checkpoint's model (PyTorch) or the exported one (ONNX Runtime or OpenVINO) on the test split of
    its (possibly overridden) dataset."""
    run = inference_model(cfg, HydraConfig.get().overrides.task)
    loader = build_test_loader(run.dataset_cfg, cfg.batch_size, cfg.num_workers, bucketed=cfg.compile)
    evaluator = DetectionEvaluator(loader.dataset, coco_backend=cfg.evaluation.coco_backend)
    source = cfg.checkpoint or f"{cfg.exported_model} ({run.model.runtime})"
    log.info("evaluating %s on %d %s test images", source, len(loader.dataset), run.dataset_cfg.name)
    if run.trained is None:  # an exported graph: its classes are fixed, no losses, fp32
        check_classes(run.class_names, loader.dataset.class_names)
        metrics = run_inference(run.model, loader, evaluator, run.device)
    else:
        model = model_for_dataset(run.model, run.class_names, loader.dataset.class_names).to(run.device)
        # The RoI sampling of the validation loss is seeded as in the training run's evaluations.
        val_loss_seed = run.trained.seed if has_annotations(loader.dataset) else None
        amp = autocast_dtype(cfg.amp or run.trained.train.amp, run.device, key="amp")
        metrics = run_inference(model, loader, evaluator, run.device, amp=amp, val_loss_seed=val_loss_seed)
    return Evaluation(
        run.dataset_cfg, loader.dataset, evaluator.predictions(), metrics, evaluator.pr_curves, run.iteration
    )


def score_file(cfg: EvaluateConfig) -> Evaluation:
    """A results file scored against the test split of cfg.dataset."""
    dataset = build_dataset(cfg.dataset, "test")
    predictions = load_predictions(cfg.predictions, cfg.invalid_predictions)
    log.info("scoring %d detections of %s on %d %s test images",
             len(predictions), cfg.predictions, len(dataset), cfg.dataset.name)  # fmt: skip
    metrics, curves = score_predictions(dataset, predictions, coco_backend=cfg.evaluation.coco_backend)
    return Evaluation(cfg.dataset, dataset, predictions, metrics, curves, 0)


def write_analysis(run_dir: Path, cfg: EvaluateConfig, run: Evaluation, seconds: float) -> None:
    """analysis.json and report/index.html of the evaluation ``run`` (which took ``seconds``), and
    its summary added to ``run.metrics`` as ``analysis``."""
    options = cfg.evaluation.analysis
    start = time.perf_counter()
    analysis, worst = analyze(
        run.dataset, run.predictions, run.metrics, run.pr_curves,
        score_threshold=options.score_threshold, num_worst=options.worst_images,
    )  # fmt: skip
    write_atomic(run_dir / "analysis.json", json.dumps(analysis, indent=2))
    index = write_report(analysis, draw_worst_images(run.dataset, worst), run_dir / "report")
    run.metrics["analysis"] = metrics_summary(analysis)
    log.info("analysis:\n%s", format_analysis_table(analysis))
    log.info(
        "wrote %s and the report %s (analysis %.1f s, evaluation %.1f s)",
        run_dir / "analysis.json", index, time.perf_counter() - start, seconds,
    )  # fmt: skip


def evaluate(raw: DictConfig, log_name: str) -> None:
    """The evaluate and analyze commands: evaluate, then write the outputs in the run folder."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    setup_logging(run_dir / log_name)
    cfg: EvaluateConfig = typed(raw)
    check_evaluate_source(cfg)
    start = time.perf_counter()
    run = score_file(cfg) if cfg.predictions is not None else evaluate_model(cfg)
    if cfg.analysis:
        write_analysis(run_dir, cfg, run, time.perf_counter() - start)

    save_predictions(run_dir / "predictions.json", run.predictions)
    write_atomic(run_dir / "metrics.json", json.dumps(run.metrics, indent=2))
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


@hydra.main(config_path=str(config_dir()), config_name="evaluate", version_base=None)
def main(raw: DictConfig) -> None:
    evaluate(raw, "evaluate.log")


def command() -> None:
    """``python scripts/evaluate.py`` and the ``frcnn-evaluate`` console command."""
    sys.argv = route_model_argument(sys.argv)
    run_command(main)


if __name__ == "__main__":
    command()
