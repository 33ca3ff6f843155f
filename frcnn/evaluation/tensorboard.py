"""TensorBoard views of an evaluation: metric scalars, per-class VOC PR curves and the error analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from frcnn.evaluation.figures import confusion_matrix_image
from frcnn.evaluation.voc_eval import ClassPR

if TYPE_CHECKING:  # the writer is the caller's; importing tensorboard here would slow every import
    from torch.utils.tensorboard import SummaryWriter


def log_metrics(writer: SummaryWriter, metrics: dict, step: int, prefix: str = "eval") -> None:
    """Scalars ``<prefix>/voc07_mAP``, ``<prefix>/voc_mAP``, ``<prefix>/coco_<name>``, per-class
    ``<prefix>_AP/<class>`` (VOC area AP) and, if present, ``val_loss/<term>`` (the tag that
    training's custom-scalars layout charts beside ``loss/<term>``); undefined values (-1) are not logged."""
    writer.add_scalar(f"{prefix}/voc07_mAP", metrics["voc07"]["mAP"], step)
    writer.add_scalar(f"{prefix}/voc_mAP", metrics["voc"]["mAP"], step)
    for name, value in metrics["coco"].items():
        if value >= 0:
            writer.add_scalar(f"{prefix}/coco_{name}", value, step)
    for class_name, value in metrics["voc"]["AP"].items():
        if value >= 0:
            writer.add_scalar(f"{prefix}_AP/{class_name}", value, step)
    for term, value in metrics.get("val_loss", {}).items():
        writer.add_scalar(f"val_loss/{term}", value, step)


def pr_curve_counts(curve: ClassPR, num_thresholds: int = 101) -> dict[str, np.ndarray]:
    """Counts and precision/recall at score thresholds ``linspace(0, 1, num_thresholds)``.

    Entry i counts the detections with score >= threshold i (the ranked PR curve cut at that
    score); false negatives are the class's positives left unmatched, true negatives are 0
    (detection has none). Arrays of length num_thresholds, as add_pr_curve_raw takes them.
    """
    thresholds = np.linspace(0.0, 1.0, num_thresholds)
    kept = np.searchsorted(-curve.scores, -thresholds, side="right")  # scores are descending
    cum_tp = np.concatenate([[0], np.cumsum(curve.tp)])
    tp = cum_tp[kept].astype(np.float64)
    fp = kept - tp
    return {
        "true_positive_counts": tp,
        "false_positive_counts": fp,
        "true_negative_counts": np.zeros(num_thresholds),
        "false_negative_counts": curve.num_positives - tp,
        "precision": np.where(kept > 0, tp / np.maximum(kept, 1), 1.0),
        "recall": tp / max(curve.num_positives, 1),
    }


def add_pr_curves(
    writer: SummaryWriter, curves: list[ClassPR], class_names: list[str], step: int, num_thresholds: int = 101
) -> None:
    """One TensorBoard PR curve per class (tag ``pr/<class>``), thresholded on detection score."""
    for class_name, curve in zip(class_names, curves):
        writer.add_pr_curve_raw(
            f"pr/{class_name}",
            global_step=step,
            num_thresholds=num_thresholds,
            **pr_curve_counts(curve, num_thresholds),
        )


def log_analysis(writer: SummaryWriter, analysis: dict, step: int) -> None:
    """The error analysis (:func:`frcnn.evaluation.analysis.analyze`): TIDE's dAP of each error type
    at IoU 0.5 as scalars ``analysis/<type>`` (cls, loc, both, dupe, bkg, miss, fp, fn: fractions)
    and the row-normalised confusion matrix as the image ``analysis/confusion_matrix``."""
    for name, value in analysis["tide"].items():
        if name != "ap":
            writer.add_scalar(f"analysis/{name}", value, step)
    writer.add_image("analysis/confusion_matrix", confusion_matrix_image(analysis["confusion_matrix"]), step,
                     dataformats="HWC")  # fmt: skip
