"""``train.best_metric``: which evaluation number ``checkpoints/best.pt`` tracks.

A name is ``<group>/<key>`` of metrics.json: ``voc07/mAP``, ``voc/mAP``, ``coco/<name>`` (AP, AP50,
... ARl) or ``val_loss/<term>`` (rpn_cls, rpn_loc, roi_cls, roi_loc, total). Losses are better
lower, the others higher.
"""

from __future__ import annotations

from typing import Optional

from frcnn.evaluation.coco_eval import COCO_METRIC_NAMES
from frcnn.evaluation.val_loss import LOSS_TERMS

BEST_METRICS = {
    "voc07": ("mAP",),
    "voc": ("mAP",),
    "coco": COCO_METRIC_NAMES,
    "val_loss": (*LOSS_TERMS, "total"),
}
LOWER_IS_BETTER = ("val_loss",)


def check_best_metric(name: str, val_loss: bool) -> None:
    """ValueError naming ``train.best_metric`` unless it names a number the evaluation produces."""
    group, _, key = name.partition("/")
    if key not in BEST_METRICS.get(group, ()):
        choices = [f"{g}/{k}" for g, keys in BEST_METRICS.items() for k in keys]
        raise ValueError(f"train.best_metric={name!r} is not an evaluation number; choose one of {choices}")
    if group == "val_loss" and not val_loss:
        raise ValueError(f"train.best_metric={name} needs the validation loss, but train.val_loss=false")


def metric_value(metrics: dict, name: str) -> float:
    """The number ``name`` (``group/key``) of a metrics.json dict."""
    group, _, key = name.partition("/")
    return metrics[group][key]


def is_better(value: float, best: Optional[float], name: str) -> bool:
    """Whether ``value`` of metric ``name`` improves on ``best`` (None: nothing recorded yet)."""
    if best is None:
        return True
    return value < best if name.partition("/")[0] in LOWER_IS_BETTER else value > best
