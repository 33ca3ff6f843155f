"""The allowed range of every numeric config key; a value outside it is an error naming the key.

The schema's types reject ``train.max_iters=abc``; these checks reject values of the right type
that would train wrongly or fail deep inside a run: ``train.clip_grad_norm=-1`` (the gradient
multiplied by a negative factor, so training climbs the loss), ``dataset.max_size=0`` (1x1
images), ``dataset.flip_prob=2``, ``seed=-1`` (numpy refuses the seed minutes later).
:data:`RANGES` names every numeric key of ``configs/train.yaml`` and its groups (a test fails
when a key is added without one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import OmegaConf


@dataclass(frozen=True)
class Range:
    """What a numeric key accepts: ``test(value)`` is true inside the range, described by ``text``.

    ``optional``: null is also accepted. ``each``: the value is a list whose every element is
    tested (non-empty; of ``length`` elements when given).
    """

    test: Callable[[float], bool]
    text: str
    optional: bool = False
    each: bool = False
    length: Optional[int] = None

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is outside the range, or None when it is inside."""
        if value is None:
            return None if self.optional else f"must be {self.text}, got null"
        if self.each:
            values = list(value)
            if not values or (self.length is not None and len(values) != self.length):
                count = f"{self.length}" if self.length is not None else "one or more"
                return f"must be a list of {count} numbers {self.text}, got {values}"
            if not all(self.test(v) for v in values):
                return f"every element must be {self.text}, got {values}"
            return None
        if not self.test(value):
            return f"must be {self.text}{' or null' if self.optional else ''}, got {value}"
        return None


POSITIVE = Range(lambda v: v > 0, "positive")
NONNEGATIVE = Range(lambda v: v >= 0, ">= 0")
FRACTION = Range(lambda v: 0 <= v <= 1, "in [0, 1]")
POSITIVE_FRACTION = Range(lambda v: 0 < v <= 1, "in (0, 1]")
BELOW_ONE = Range(lambda v: 0 <= v < 1, "in [0, 1)")
POSITIVE_OR_NULL = Range(POSITIVE.test, POSITIVE.text, optional=True)
EACH_POSITIVE = Range(POSITIVE.test, POSITIVE.text, each=True)
EACH_NONNEGATIVE = Range(NONNEGATIVE.test, NONNEGATIVE.text, each=True)
FOUR_POSITIVE = Range(POSITIVE.test, POSITIVE.text, each=True, length=4)
TWO_BELOW_ONE = Range(BELOW_ONE.test, BELOW_ONE.text, each=True, length=2)

RANGES: dict[str, Range] = {
    "seed": NONNEGATIVE,
    # dataset
    "dataset.min_size": EACH_POSITIVE,
    "dataset.test_min_size": POSITIVE,
    "dataset.max_size": POSITIVE,
    "dataset.flip_prob": FRACTION,
    "dataset.size_divisibility": POSITIVE,
    "dataset.size_buckets": POSITIVE,
    "dataset.num_workers": NONNEGATIVE,
    "dataset.seed": NONNEGATIVE,
    "dataset.shapes.num_train": POSITIVE,
    "dataset.shapes.num_test": POSITIVE,
    "dataset.shapes.min_image_size": POSITIVE,
    "dataset.shapes.max_image_size": POSITIVE,
    "dataset.shapes.max_objects": POSITIVE,
    "dataset.shapes.empty_fraction": FRACTION,
    "dataset.shapes.min_object_size": POSITIVE_FRACTION,
    "dataset.shapes.max_object_size": POSITIVE_FRACTION,
    "dataset.shapes.min_visible": FRACTION,
    "dataset.shapes.noise_std": NONNEGATIVE,
    # model
    "model.fpn_channels": POSITIVE,
    "model.backbone.depth": POSITIVE,  # which depths exist: checked when the backbone is built
    # which counts exist for the backbone (ResNet 0..5, MobileNetV3 0..6): checked when it is built
    "model.backbone.frozen_stages": Range(lambda v: 0 <= v <= 6, "in 0..6", optional=True),
    "model.anchors.base_size": POSITIVE,
    "model.anchors.scales": EACH_POSITIVE,
    "model.anchors.ratios": EACH_POSITIVE,
    "model.anchors.stride": POSITIVE,
    "model.anchors.offset": BELOW_ONE,
    "model.rpn.conv_channels": POSITIVE,
    "model.rpn.conv_depth": POSITIVE,
    "model.rpn.nms_thresh": FRACTION,
    "model.rpn.score_thresh": FRACTION,
    "model.rpn.pre_nms_top_n_train": POSITIVE,
    "model.rpn.post_nms_top_n_train": POSITIVE,
    "model.rpn.pre_nms_top_n_test": POSITIVE,
    "model.rpn.post_nms_top_n_test": POSITIVE,
    "model.rpn.min_size": NONNEGATIVE,
    "model.rpn.batch_size_per_image": POSITIVE,
    "model.rpn.positive_fraction": FRACTION,
    "model.rpn.pos_iou_thresh": FRACTION,
    "model.rpn.neg_iou_thresh": FRACTION,
    "model.rpn.bbox_std": FOUR_POSITIVE,
    "model.rpn.loc_sigma": POSITIVE,
    "model.rpn.boundary_thresh": Range(lambda v: v >= 0 or v == -1, ">= 0 (or -1: keep every anchor)"),
    "model.roi_head.roi_size": POSITIVE,
    "model.roi_head.sampling_ratio": NONNEGATIVE,  # 0: adaptive (torchvision)
    "model.roi_head.batch_size_per_image": POSITIVE,
    "model.roi_head.positive_fraction": FRACTION,
    "model.roi_head.fg_iou_thresh": FRACTION,
    "model.roi_head.bg_iou_thresh_hi": FRACTION,
    "model.roi_head.bg_iou_thresh_lo": FRACTION,
    "model.roi_head.bbox_std": FOUR_POSITIVE,
    "model.roi_head.loc_sigma": POSITIVE,
    "model.roi_head.score_thresh": FRACTION,
    "model.roi_head.nms_thresh": FRACTION,
    "model.roi_head.detections_per_image": POSITIVE,
    "model.roi_head.mlp_dim": POSITIVE,
    "model.roi_head.conv_dims": EACH_POSITIVE,
    # optimisation
    "optimizer.base_lr": POSITIVE,
    "optimizer.reference_batch_size": POSITIVE,
    "optimizer.momentum": BELOW_ONE,
    "optimizer.betas": TWO_BELOW_ONE,
    "optimizer.weight_decay": NONNEGATIVE,
    "schedule.warmup_iters": NONNEGATIVE,
    "schedule.warmup_factor": POSITIVE_FRACTION,
    "schedule.steps": EACH_NONNEGATIVE,
    "schedule.gamma": POSITIVE,
    "schedule.min_lr_factor": FRACTION,
    # the loop
    "train.max_iters": POSITIVE,
    "train.batch_size": POSITIVE,
    "train.eval_period": NONNEGATIVE,  # 0: only at the end
    "train.eval_batch_size": POSITIVE,
    "train.checkpoint_period": POSITIVE,
    "train.keep_checkpoints": NONNEGATIVE,
    "train.clip_grad_norm": POSITIVE_OR_NULL,
    "train.max_nonfinite_steps": POSITIVE,
    "train.divergence_factor": Range(lambda v: v > 1, "> 1", optional=True),
    "train.divergence_steps": POSITIVE,
    "train.dist_timeout": POSITIVE_OR_NULL,
    "train.log_period": POSITIVE,
    "train.vis_images": NONNEGATIVE,
    "train.ema_decay": BELOW_ONE,  # 0: off
    "train.ema_warmup_iters": NONNEGATIVE,  # 0: no warm-up
}  # fmt: skip

# The roots of configs/evaluate.yaml and configs/predict.yaml (their dataset and model nodes are
# checked with the keys above).
EVALUATE_RANGES: dict[str, Range] = {
    "batch_size": POSITIVE,
    "num_workers": Range(NONNEGATIVE.test, NONNEGATIVE.text, optional=True),
}
PREDICT_RANGES: dict[str, Range] = {"batch_size": POSITIVE, "score_threshold": FRACTION}

# (smaller, larger): the first must not exceed the second.
ORDERED = (
    ("dataset.shapes.min_image_size", "dataset.shapes.max_image_size"),
    ("dataset.shapes.min_object_size", "dataset.shapes.max_object_size"),
    ("model.rpn.neg_iou_thresh", "model.rpn.pos_iou_thresh"),
    ("model.roi_head.bg_iou_thresh_lo", "model.roi_head.bg_iou_thresh_hi"),
)

_MISSING = object()


def check_ranges(cfg, node: str = "", ranges: dict[str, Range] = RANGES) -> None:
    """Raise ValueError naming the first key of ``cfg`` outside its range in ``ranges``.

    ``node``: where ``cfg`` sits in the training config (``"model"`` for a model node alone, as
    evaluate.py and predict.py build from a checkpoint); "" for the whole config. Keys the config
    does not have are skipped.
    """
    prefix = f"{node}." if node else ""

    def value(key: str) -> Any:
        if not key.startswith(prefix):
            return _MISSING
        found = OmegaConf.select(cfg, key[len(prefix) :], default=_MISSING)
        return OmegaConf.to_object(found) if OmegaConf.is_config(found) else found

    for key, allowed in ranges.items():
        found = value(key)
        if found is not _MISSING and (problem := allowed.problem(found)):
            raise ValueError(f"{key} {problem}")
    for smaller, larger in ORDERED if ranges is RANGES else ():
        low, high = value(smaller), value(larger)
        if low is not _MISSING and high is not _MISSING and low > high:
            raise ValueError(f"{smaller}={low} exceeds {larger}={high}")
