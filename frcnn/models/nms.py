"""Non-maximum suppression in fixed-shape form, with the semantics of ONNX ``NonMaxSuppression``.

Shapes: NB batches (independent groups of boxes: (image, level) pairs in the proposal layer,
(image, class) pairs in the detection stage), S boxes per batch, C score columns (classes) per
batch. Boxes are ``(x1, y1, x2, y2)``; IoU is symmetric in x and y, so ONNX's
``center_point_box=0`` corner order ``(y1, x1, y2, x2)`` gives the same result.

The result is a mask of the scores' shape rather than a list of selected boxes, so that what
follows has fixed shapes. The stages take the NMS as a part (``nms=``): the export swaps in
:func:`frcnn.export.nms.onnx_non_max_suppression`, the same mask from the ONNX operator.
"""

from typing import Protocol

import torch
from torchvision.ops import batched_nms, nms

# Scores <= this float32 are never selected: -inf marks a dropped box, any finite score passes.
LOWEST_SCORE = float(torch.finfo(torch.float32).min)


class NMS(Protocol):
    """What the stages call for NMS: :func:`non_max_suppression`'s signature and result."""

    def __call__(
        self, boxes: torch.Tensor, scores: torch.Tensor, *, max_output: int, iou_thresh: float, score_thresh: float
    ) -> torch.Tensor: ...


def non_max_suppression(
    boxes: torch.Tensor, scores: torch.Tensor, *, max_output: int, iou_thresh: float, score_thresh: float
) -> torch.Tensor:
    """Greedy NMS within each (batch, class): among the boxes scoring above ``score_thresh``, by
    decreasing score, a box is kept unless its IoU with a kept box exceeds ``iou_thresh``; at
    most ``max_output`` are kept per (batch, class).

    ``boxes [NB, S, 4]``, ``scores [NB, C, S]`` -> ``kept [NB, C, S]`` bool. Runs torchvision's
    ``batched_nms``, one group per (batch, class).
    """
    num_batches, num_classes, num_boxes = scores.shape
    flat_scores = scores.reshape(-1)  # (NB*C*S), batch-major, then class
    flat_boxes = boxes[:, None].expand(-1, num_classes, -1, -1).reshape(-1, 4)
    group = torch.arange(num_batches * num_classes, device=scores.device).repeat_interleave(num_boxes)
    selectable = flat_scores > score_thresh
    # Boxes at or below the threshold sort after every selectable box, so they suppress none. With
    # a real threshold (detections) they are removed before NMS, at the price of a device sync;
    # without one (the proposal layer, which also runs in training) they take part, masked below.
    if score_thresh > LOWEST_SCORE:
        candidates = selectable.nonzero()[:, 0]
        keep = candidates[
            grouped_nms(flat_boxes[candidates], flat_scores[candidates], group[candidates], iou_thresh, flat_boxes)
        ]
    else:
        keep = grouped_nms(flat_boxes, flat_scores, group, iou_thresh, flat_boxes)  # by decreasing score
    order, rank = rank_within_group(group[keep], num_batches * num_classes)
    kept = torch.zeros_like(selectable)
    kept[keep[order]] = rank < max_output  # values, not a boolean index: no device sync
    return (kept & selectable).reshape(scores.shape)


def grouped_nms(
    boxes: torch.Tensor, scores: torch.Tensor, group: torch.Tensor, iou_thresh: float, bounds: torch.Tensor
) -> torch.Tensor:
    """Indices of the boxes kept by NMS within each group, by decreasing score: torchvision's
    ``batched_nms``. Under ``torch.compile`` its coordinate trick alone (each group shifted by
    ``group`` times a distance beyond every coordinate of ``bounds [M, 4]``, M > 0, boxes that
    include ``boxes``; one ``nms``): ``batched_nms`` chooses its method by the box count, which is
    data-dependent there, and takes the maximum of ``boxes``, which an empty selection has not."""
    if not torch.compiler.is_compiling():
        return batched_nms(boxes, scores, group, iou_thresh)
    spread = bounds.max().clamp(min=0) + 1
    return nms(boxes + (group.to(boxes.dtype) * spread)[:, None], scores, iou_thresh)


def rank_within_group(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Order and per-group rank of score-sorted items.

    ``group [N]`` gives the group of items already sorted by decreasing score (as NMS returns
    them). Returns ``order [N]`` (a stable sort by group, so scores still decrease within a
    group) and ``rank [N]``: the position of item ``order[i]`` among its group's items.
    """
    group, order = torch.sort(group, stable=True)
    # Counts by scatter_add rather than bincount: a fixed output size, which torch.compile can trace.
    counts = torch.zeros(num_groups, dtype=torch.int64, device=group.device).scatter_add_(
        0, group, torch.ones_like(group)
    )
    starts = counts.cumsum(0) - counts
    rank = torch.arange(len(group), device=group.device) - starts[group]
    return order, rank
