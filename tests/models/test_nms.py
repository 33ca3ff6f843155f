"""The fixed-shape NMS against torchvision's NMS run group by group (the ONNX operator's
semantics are checked against ONNX Runtime in tests/export/test_graph.py)."""

import pytest
import torch
from torchvision.ops import nms

from frcnn.models.nms import LOWEST_SCORE, non_max_suppression


def reference_mask(boxes, scores, max_output, iou_thresh, score_thresh):
    """torchvision's NMS on each (batch, class) alone: the boxes above the threshold, the first
    ``max_output`` kept ones."""
    kept = torch.zeros_like(scores, dtype=torch.bool)
    for batch in range(scores.shape[0]):
        for cls in range(scores.shape[1]):
            candidates = (scores[batch, cls] > score_thresh).nonzero()[:, 0]
            keep = nms(boxes[batch, candidates], scores[batch, cls, candidates], iou_thresh)[:max_output]
            kept[batch, cls, candidates[keep]] = True
    return kept


def random_boxes(generator, batches, count):
    corners = torch.rand(batches, count, 2, generator=generator) * 50
    return torch.cat([corners, corners + 5 + torch.rand(batches, count, 2, generator=generator) * 20], dim=2)


@pytest.mark.parametrize("score_thresh", [0.3, LOWEST_SCORE])  # with and without removal before NMS
@pytest.mark.parametrize("max_output", [3, 100])
def test_nms_mask_equals_torchvision_nms_per_group(score_thresh, max_output):
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(generator, 3, 40)
    scores = torch.rand(3, 2, 40, generator=generator)
    scores[1, 1, 5:12] = float("-inf")  # dropped boxes: never kept, suppress nothing
    kept = non_max_suppression(boxes, scores, max_output=max_output, iou_thresh=0.4, score_thresh=score_thresh)
    assert kept.shape == scores.shape and kept.dtype == torch.bool
    assert torch.equal(kept, reference_mask(boxes, scores, max_output, 0.4, score_thresh))
    assert not kept[1, 1, 5:12].any()
    assert kept.sum(dim=2).max() <= max_output and kept.sum() > 10


def test_groups_do_not_suppress_each_other():
    box = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    boxes = torch.cat([box, box])  # the same box in two batches
    scores = torch.tensor([[[0.9], [0.8]], [[0.7], [0.6]]])  # two classes each
    kept = non_max_suppression(boxes, scores, max_output=5, iou_thresh=0.5, score_thresh=0.1)
    assert kept.all()
