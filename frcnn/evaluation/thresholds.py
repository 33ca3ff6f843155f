"""Score thresholds from ranked PR curves: each class's F1-optimal cut and one for deployment.

A cut at score s keeps the detections scoring >= s, so it can only fall after the last of a run
of equal scores. F1 = 2 P R / (P + R), with P and R those of the VOC PR curve (IoU 0.5,
difficult objects ignored) cut there.
"""

from __future__ import annotations

import numpy as np

from frcnn.evaluation.voc_eval import ClassPR

# The grid the mean F1 curve is drawn and maximised on (Ultralytics' F1-confidence curve).
F1_CURVE_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(2 * precision * recall / (precision + recall))


def best_f1(curve: ClassPR) -> dict | None:
    """The cut of ``curve`` with the highest F1 (the highest such threshold on ties):
    ``{"threshold", "precision", "recall", "f1"}``; threshold None when the class has no
    detection. None for a class without positives (F1 undefined)."""
    if curve.num_positives == 0:
        return None
    if len(curve.tp) == 0:
        return {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    scores = np.asarray(curve.scores)
    cuts = np.nonzero(np.r_[scores[1:] != scores[:-1], True])[0]  # last row of each run of equal scores
    precision, recall = curve.precision[cuts], curve.recall[cuts]
    best = int(np.argmax(_f1(precision, recall)))
    row = cuts[best]
    return {
        "threshold": float(scores[row]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f1": float(_f1(precision[best : best + 1], recall[best : best + 1])[0]),
    }


def curve_at(curve: ClassPR, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) of ``curve`` cut at each score threshold, float64 [T]; a cut that
    keeps nothing has precision 1 (no false positive) and recall 0."""
    kept = np.searchsorted(-np.asarray(curve.scores), -np.asarray(thresholds), side="right")
    tp = np.r_[0, np.cumsum(curve.tp)][kept].astype(np.float64)
    precision = np.where(kept > 0, tp / np.maximum(kept, 1), 1.0)
    recall = tp / max(curve.num_positives, 1)
    return precision, recall, _f1(precision, recall) * (kept > 0)


def f1_curves(curves: list[ClassPR], thresholds: np.ndarray = F1_CURVE_THRESHOLDS) -> dict:
    """F1 per class [K, T] and their mean over the classes with positives [T] at ``thresholds``,
    and the suggested deployment threshold: where the mean F1 peaks (the highest such threshold),
    ``{"threshold", "f1", "precision", "recall"}`` (precision and recall: means over those classes).
    """
    rows = [curve_at(curve, thresholds) for curve in curves]
    defined = np.asarray([curve.num_positives > 0 for curve in curves], dtype=bool)
    per_class = np.asarray([f1 for _, _, f1 in rows]).reshape(len(curves), len(thresholds))
    if not defined.any():
        mean = np.zeros(len(thresholds))
        return {"thresholds": thresholds, "per_class": per_class, "mean": mean, "suggested": None}
    mean = per_class[defined].mean(axis=0)
    best = len(mean) - 1 - int(np.argmax(mean[::-1]))
    precision = np.mean([rows[k][0][best] for k in np.nonzero(defined)[0]])
    recall = np.mean([rows[k][1][best] for k in np.nonzero(defined)[0]])
    suggested = {
        "threshold": float(thresholds[best]),
        "f1": float(mean[best]),
        "precision": float(precision),
        "recall": float(recall),
    }
    return {"thresholds": thresholds, "per_class": per_class, "mean": mean, "suggested": suggested}
