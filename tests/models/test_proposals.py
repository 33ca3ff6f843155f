"""The proposal layer: clipping, the size filter, NMS within image and level, the top-N, its
fixed shapes at any image size, and equality with a per-image, per-level reference."""

import pytest
import torch
from torchvision.ops import nms

from frcnn.models.anchors import AnchorGenerator
from frcnn.models.box_coder import BoxCoder, clip_boxes
from frcnn.models.proposals import PAD_BOX, num_proposals, propose

SETTINGS = {"pre_nms_top_n": 100, "post_nms_top_n": 10, "nms_thresh": 0.7, "min_size": 4.0}


def _propose(anchors, logits, sizes, **kwargs):
    deltas = torch.zeros(logits.shape[0], logits.shape[1], 4)
    return propose([anchors], [logits], [deltas], torch.tensor(sizes), BoxCoder(), **(SETTINGS | kwargs))


def test_propose_clips_drops_small_nms_and_top_n():
    anchors = torch.tensor(
        [
            [0.0, 0.0, 20.0, 20.0],
            [1.0, 1.0, 21.0, 21.0],  # IoU 0.82 with anchor 0: suppressed when lower scored
            [40.0, 40.0, 70.0, 90.0],  # clipped to the 60x80 image
            [10.0, 50.0, 12.0, 60.0],  # 2 px wide: dropped
            [30.0, 0.0, 50.0, 20.0],
        ]
    )
    logits = torch.tensor([[0.5, 0.9, 0.8, 5.0, 0.1], [0.5, 0.9, 0.8, 5.0, 0.1]])
    proposals = _propose(anchors, logits, [[60, 80], [60, 80]])
    assert proposals.boxes.shape == (2, 10, 4)  # post_nms_top_n, whatever the number of anchors
    assert proposals.valid.tolist() == [[True] * 3 + [False] * 7] * 2
    expected = torch.tensor([[1.0, 1, 21, 21], [40.0, 40, 70, 60], [30.0, 0, 50, 20]])
    torch.testing.assert_close(proposals.boxes[0, :3], expected)
    top = _propose(anchors, logits, [[60, 80], [60, 80]], post_nms_top_n=2)
    assert top.boxes.shape == (2, 2, 4) and top.valid.all()
    pre = _propose(anchors, logits, [[60, 80], [60, 80]], pre_nms_top_n=2)  # the 2 best: anchors 1 and 2
    assert pre.boxes.shape == (2, 2, 4) and pre.valid.all()
    # torchvision's order: the top 2 by objectness first (the 2 px box and anchor 1), then the
    # size filter drops the 2 px box.
    after = _propose(anchors, logits, [[60, 80], [60, 80]], pre_nms_top_n=2, min_size_after_top_n=True)
    assert after.valid.sum(1).tolist() == [1, 1]
    torch.testing.assert_close(after.boxes[:, 0], torch.tensor([[1.0, 1, 21, 21]] * 2))


def test_score_thresh_drops_proposals_of_lower_objectness_probability():
    """torchvision's rpn_score_thresh: sigmoid(logit) < score_thresh is dropped; 0 keeps every box."""
    anchors = torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 0.0, 50.0, 20.0], [0.0, 30.0, 20.0, 50.0]])
    logits = torch.tensor([[-4.0, -2.0, 3.0]])  # probabilities 0.018, 0.119, 0.953
    assert _propose(anchors, logits, [[60, 60]]).valid.sum() == 3
    proposals = _propose(anchors, logits, [[60, 60]], score_thresh=0.05)
    assert proposals.valid.tolist() == [[True, True] + [False] * 8]
    torch.testing.assert_close(proposals.boxes[0, :2], anchors[[2, 1]])


def test_propose_images_do_not_suppress_each_other():
    anchors = torch.tensor([[0.0, 0.0, 20.0, 20.0], [50.0, 50.0, 60.0, 60.0]])
    logits = torch.tensor([[3.0, -1.0], [-2.0, 1.0]])
    proposals = _propose(anchors, logits, [[100, 100], [100, 100]])
    torch.testing.assert_close(proposals.boxes[0, :2], anchors)
    torch.testing.assert_close(proposals.boxes[1, :2], anchors.flip(0))
    assert proposals.valid.sum(1).tolist() == [2, 2]


def test_propose_levels_do_not_suppress_each_other():
    box = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    deltas = torch.zeros(1, 1, 4)
    proposals = propose([box, box], [torch.tensor([[1.0]]), torch.tensor([[2.0]])], [deltas, deltas],
                        torch.tensor([[50, 50]]), BoxCoder(), **SETTINGS)  # fmt: skip
    assert proposals.boxes.shape == (1, 10, 4) and proposals.valid.sum() == 2  # L * k = 200 candidates


def random_level(generator, batch, height, width, stride):
    """Anchors of a ``height x width`` map and random predictions for them."""
    anchor_generator = AnchorGenerator(base_size=stride, scales=[1.0, 2.0], ratios=[0.5, 1.0, 2.0], stride=stride)
    anchors = anchor_generator((height, width))
    logits = torch.randn(batch, len(anchors), generator=generator)
    deltas = torch.randn(batch, len(anchors), 4, generator=generator) * 0.3
    return anchors, logits, deltas


def reference_proposals(anchors, logits, deltas, image_sizes, coder, *, pre_nms_top_n, post_nms_top_n, nms_thresh,
                        min_size, min_size_after_top_n):  # fmt: skip
    """The proposal layer image by image and level by level, with nothing padded: per level the
    ``min(k, N_l)`` best boxes, the size filter (before or after), NMS; then the best of all levels."""
    per_image = []
    for b, size in enumerate(image_sizes):
        boxes, scores = [], []
        for level_anchors, level_logits, level_deltas in zip(anchors, logits, deltas):
            level_boxes = clip_boxes(coder.decode(level_anchors[None], level_deltas[b : b + 1]), size[None])[0]
            level_scores = level_logits[b]
            keep = ((level_boxes[:, 2:] - level_boxes[:, :2]) >= min_size).all(dim=1)
            if not min_size_after_top_n:
                level_boxes, level_scores = level_boxes[keep], level_scores[keep]
            top = level_scores.topk(min(pre_nms_top_n, len(level_scores))).indices
            level_boxes, level_scores = level_boxes[top], level_scores[top]
            if min_size_after_top_n:
                keep = ((level_boxes[:, 2:] - level_boxes[:, :2]) >= min_size).all(dim=1)
                level_boxes, level_scores = level_boxes[keep], level_scores[keep]
            keep = nms(level_boxes, level_scores, nms_thresh)
            boxes.append(level_boxes[keep])
            scores.append(level_scores[keep])
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        per_image.append(boxes[scores.argsort(descending=True)[:post_nms_top_n]])
    return per_image


@pytest.mark.parametrize("min_size_after_top_n", [False, True])
@pytest.mark.parametrize("map_size", [(3, 4), (10, 13)])  # fewer anchors than k on every level, and more
def test_propose_equals_the_per_image_reference_with_fixed_shapes(min_size_after_top_n, map_size):
    generator = torch.Generator().manual_seed(0)
    height, width = map_size
    levels = [random_level(generator, 2, -(-height // 2**i), -(-width // 2**i), 8 * 2**i) for i in range(3)]
    anchors, logits, deltas = (list(parts) for parts in zip(*levels))
    image_sizes = torch.tensor([[8 * height, 8 * width], [6 * height, 5 * width]])
    settings = {"pre_nms_top_n": 120, "post_nms_top_n": 150, "nms_thresh": 0.6, "min_size": 10.0,
                "min_size_after_top_n": min_size_after_top_n}  # fmt: skip
    proposals = propose(anchors, logits, deltas, image_sizes, BoxCoder(), **settings)
    assert num_proposals(120, 150, 3) == 150
    assert proposals.boxes.shape == (2, 150, 4) and proposals.valid.shape == (2, 150)
    expected = reference_proposals(anchors, logits, deltas, image_sizes, BoxCoder(), **settings)
    for b in range(2):
        count = int(proposals.valid[b].sum())
        assert count == len(expected[b]) > 0
        assert proposals.valid[b, :count].all()  # the valid ones first
        torch.testing.assert_close(proposals.boxes[b, :count], expected[b], rtol=0, atol=0)
        # The padding of a level with fewer than k anchors is never a proposal.
        assert not (proposals.boxes[b, :count] == torch.tensor(PAD_BOX)).all(dim=1).any()
