"""The models' NMS (:func:`frcnn.models.nms.non_max_suppression`) as the ONNX
``NonMaxSuppression`` operator: the exported graph calls the operator, and while the exporter
traces, the models' own implementation computes the values.

Shapes: as in :mod:`frcnn.models.nms`: NB batches, C classes per batch, S boxes per batch; M
selected boxes in all. Boxes are ``(x1, y1, x2, y2)`` (``center_point_box=0``).
"""

import torch

from frcnn.models.nms import non_max_suppression


class NonMaxSuppression(torch.autograd.Function):
    """``NonMaxSuppression.apply(boxes [NB, S, 4], scores [NB, C, S], max_output, iou_thresh,
    score_thresh) -> selected [M, 3]`` int64 ``(batch, class, box)`` rows, exported as ONNX
    ``NonMaxSuppression``. The eager rows are those of the models' mask, in index order rather
    than ONNX's decreasing score within a class: only the set is used."""

    @staticmethod
    def forward(ctx, boxes, scores, max_output: int, iou_thresh: float, score_thresh: float):
        kept = non_max_suppression(
            boxes, scores, max_output=max_output, iou_thresh=iou_thresh, score_thresh=score_thresh
        )
        return kept.nonzero()

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


def onnx_non_max_suppression(
    boxes: torch.Tensor, scores: torch.Tensor, *, max_output: int, iou_thresh: float, score_thresh: float
) -> torch.Tensor:
    """:func:`frcnn.models.nms.non_max_suppression` (same arguments, ``kept [NB, C, S]`` bool)
    traced as the ONNX operator, its selected rows scattered into the mask."""
    selected = NonMaxSuppression.apply(boxes, scores, max_output, iou_thresh, score_thresh)
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept[selected[:, 0], selected[:, 1], selected[:, 2]] = True
    return kept
