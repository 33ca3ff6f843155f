"""ONNX ``NonMaxSuppression`` as a PyTorch op: the exported graph calls the ONNX operator, and
the same semantics run in eager PyTorch while the exporter traces the model.

Shapes: NB batches (any independent groups of boxes: images, or image-class pairs), S boxes
per batch, C score columns per batch. Boxes are ``(x1, y1, x2, y2)`` (ONNX's
``center_point_box=0``: IoU is symmetric in x and y, so its ``(y1, x1, y2, x2)`` order is
immaterial).
"""

import torch
from torchvision.ops import batched_nms

# Scores <= this float32 are never selected: -inf marks a dropped box, any finite score passes.
LOWEST_SCORE = float(torch.finfo(torch.float32).min)


def _reference_nms(
    boxes: torch.Tensor, scores: torch.Tensor, max_output: int, iou_thresh: float, score_thresh: float
) -> torch.Tensor:
    """ONNX NonMaxSuppression in PyTorch: per (batch, class), boxes with a score above
    ``score_thresh`` by decreasing score, greedy IoU > ``iou_thresh`` suppression, at most
    ``max_output`` kept. ``boxes [NB, S, 4]``, ``scores [NB, C, S]`` -> ``[M, 3]`` int64 rows
    ``(batch, class, box)`` ordered by batch, class, then decreasing score."""
    num_batches, num_classes, num_boxes = scores.shape
    flat_scores = scores.reshape(-1)  # (NB * C * S), batch-major
    group = torch.arange(num_batches * num_classes, device=scores.device).repeat_interleave(num_boxes)
    box = torch.arange(num_boxes, device=scores.device).repeat(num_batches * num_classes)
    batch = torch.div(group, num_classes, rounding_mode="floor")
    candidates = (flat_scores > score_thresh).nonzero()[:, 0]
    keep = batched_nms(boxes[batch[candidates], box[candidates]], flat_scores[candidates], group[candidates], iou_thresh)
    keep = candidates[keep]  # by decreasing score
    group_sorted, order = torch.sort(group[keep], stable=True)
    counts = torch.bincount(group_sorted, minlength=num_batches * num_classes)
    rank = torch.arange(len(order), device=scores.device) - (counts.cumsum(0) - counts)[group_sorted]
    keep = keep[order][rank < max_output]
    return torch.stack([batch[keep], group[keep] % num_classes, box[keep]], dim=1)


class NonMaxSuppression(torch.autograd.Function):
    """``NonMaxSuppression.apply(boxes [NB, S, 4], scores [NB, C, S], max_output, iou_thresh,
    score_thresh) -> selected [M, 3]`` int64 ``(batch, class, box)``; see :func:`_reference_nms`."""

    @staticmethod
    def forward(ctx, boxes, scores, max_output: int, iou_thresh: float, score_thresh: float):
        return _reference_nms(boxes, scores, max_output, iou_thresh, score_thresh)

    @staticmethod
    def symbolic(g, boxes, scores, max_output: int, iou_thresh: float, score_thresh: float):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_output], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_thresh], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_thresh], dtype=torch.float32)),
            center_point_box_i=0,
        )


def non_max_suppression(
    boxes: torch.Tensor, scores: torch.Tensor, max_output: int, iou_thresh: float, score_thresh: float
) -> torch.Tensor:
    """Batched, class-aware NMS with ONNX NonMaxSuppression semantics (exports as that operator)."""
    return NonMaxSuppression.apply(boxes, scores, max_output, iou_thresh, score_thresh)
