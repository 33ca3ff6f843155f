"""Detection metrics (VOC07, VOC, COCO), the evaluator run over a loader, result files, the
validation loss and the metric that picks the best checkpoint."""

from frcnn.evaluation.coco_eval import coco_metrics
from frcnn.evaluation.evaluator import (
    DetectionEvaluator,
    format_metrics_table,
    run_inference,
    score_predictions,
)
from frcnn.evaluation.results_io import load_predictions, save_predictions, write_voc_devkit_results
from frcnn.evaluation.tensorboard import add_pr_curves, log_metrics
from frcnn.evaluation.voc_eval import voc_metrics, voc_pr_curves

__all__ = [
    "DetectionEvaluator",
    "add_pr_curves",
    "coco_metrics",
    "format_metrics_table",
    "load_predictions",
    "log_metrics",
    "run_inference",
    "save_predictions",
    "score_predictions",
    "voc_metrics",
    "voc_pr_curves",
    "write_voc_devkit_results",
]
