import pytest
import torch

from frcnn.models.box_coder import BoxCoder
from frcnn.models.matching import GroundTruth, pad_targets, subsample_labels
from frcnn.models.proposals import Proposals
from frcnn.models.roi_head import proposal_targets
from frcnn.models.rpn import anchor_targets

ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # 0: equals gt 0 -> positive
        [0.0, 0.0, 10.0, 8.0],  # 1: IoU 0.8 with gt 0 -> positive
        [0.0, 0.0, 10.0, 5.0],  # 2: IoU 0.5 -> between thresholds, ignored
        [50.0, 50.0, 60.0, 60.0],  # 3: IoU 0.017 with gt 1 but its best inside anchor -> positive
        [-5.0, 0.0, 5.0, 10.0],  # 4: crosses the left border -> ignored
        [40.0, 40.0, 52.0, 104.0],  # 5: IoU 0.19 with gt 1 but crosses the bottom -> ignored
        [80.0, 80.0, 95.0, 95.0],  # 6: IoU 0 -> negative
    ]
)


def _targets(boxes_per_image, labels_per_image):
    return pad_targets(
        [
            {"boxes": torch.tensor(b).reshape(-1, 4), "labels": torch.tensor(c, dtype=torch.int64)}
            for b, c in zip(boxes_per_image, labels_per_image)
        ],
        torch.device("cpu"),
    )


def _anchor_targets(gt, sizes, num_samples=100):
    return anchor_targets(
        ANCHORS,
        gt,
        torch.tensor(sizes),
        pos_iou_thresh=0.7,
        neg_iou_thresh=0.3,
        num_samples=num_samples,
        positive_fraction=0.5,
    )


def test_anchor_targets_thresholds_best_anchor_rule_and_border():
    gt = _targets([[[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 52.0, 52.0]], []], [[1, 2], []])
    labels, boxes = _anchor_targets(gt, [[100, 100], [100, 100]])
    assert labels[0].tolist() == [1, 1, -1, 1, -1, -1, 0]
    torch.testing.assert_close(
        boxes[0, [0, 1, 3]], torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [40.0, 40, 52, 52]])
    )
    # No objects: every anchor inside the image is negative, cross-border ones stay ignored.
    assert labels[1].tolist() == [0, 0, 0, 0, -1, -1, 0]


def test_anchor_targets_all_tied_best_anchors_are_positive_and_size_decides_border():
    gt = _targets([[[0.0, 0.0, 10.0, 6.0]]], [[1]])  # IoU 0.5 with anchors 0 and 1: a tie
    tied = torch.tensor([[0.0, 0.0, 10.0, 12.0], [0.0, 0.0, 10.0, 12.0], [0.0, 0.0, 10.0, 30.0]])
    labels, _ = anchor_targets(
        tied,
        gt,
        torch.tensor([[20, 20]]),
        pos_iou_thresh=0.7,
        neg_iou_thresh=0.3,
        num_samples=10,
        positive_fraction=0.5,
    )
    assert labels[0].tolist() == [1, 1, -1]  # anchor 2 (IoU 0.2 but crossing y=20) ignored
    labels, _ = anchor_targets(
        tied,
        gt,
        torch.tensor([[40, 20]]),
        pos_iou_thresh=0.7,
        neg_iou_thresh=0.3,
        num_samples=10,
        positive_fraction=0.5,
    )
    assert labels[0].tolist() == [1, 1, 0]


def test_anchor_targets_sampling_counts():
    torch.manual_seed(0)
    anchors = torch.rand(2000, 2) * 200
    anchors = torch.cat([anchors, anchors + 8 + torch.rand(2000, 2) * 40], dim=1)
    gt = _targets([[[20.0, 20.0, 60.0, 60.0], [100.0, 100.0, 150.0, 130.0]], []], [[1, 1], []])
    labels, _ = anchor_targets(
        anchors,
        gt,
        torch.tensor([[400, 400], [400, 400]]),
        pos_iou_thresh=0.3,
        neg_iou_thresh=0.3,
        num_samples=64,
        positive_fraction=0.5,
    )
    assert 0 < (labels[0] == 1).sum() <= 32
    assert (labels[0] >= 0).sum() == 64
    assert (labels[1] == 1).sum() == 0 and (labels[1] == 0).sum() == 64


def test_subsample_labels_counts_and_subsets():
    torch.manual_seed(0)
    positive = torch.zeros(3, 1000, dtype=torch.bool)
    positive[0, :300] = True  # plenty of positives
    positive[1, :10] = True  # few positives: negatives fill up
    positive[2, :3] = True  # few of both
    negative = torch.zeros_like(positive)
    negative[0, 300:] = True
    negative[1, 10:] = True
    negative[2, 500:505] = True
    sampled_pos, sampled_neg = subsample_labels(positive, negative, 256, 0.5)
    assert sampled_pos.sum(1).tolist() == [128, 10, 3]
    assert sampled_neg.sum(1).tolist() == [128, 246, 5]
    assert not (sampled_pos & ~positive).any() and not (sampled_neg & ~negative).any()
    # Uniform choice: repeated draws cover different positives.
    other_pos, _ = subsample_labels(positive, negative, 256, 0.5)
    assert not torch.equal(other_pos[0], sampled_pos[0])


def _proposal_targets(proposals, gt, num_samples, coder):
    return proposal_targets(
        proposals,
        gt,
        coder,
        num_samples=num_samples,
        positive_fraction=0.25,
        fg_iou_thresh=0.5,
        bg_iou_thresh_hi=0.5,
        bg_iou_thresh_lo=0.0,
    )


def test_proposal_targets_append_gt_label_and_encode():
    torch.manual_seed(0)
    coder = BoxCoder((0.1, 0.1, 0.2, 0.2))
    boxes = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 9.0], [50.0, 50.0, 70.0, 70.0], [0.0, 0.0, 0.0, 0.0], [30.0, 30.0, 40.0, 40.0]],
            [[0.0, 0.0, 10.0, 9.0], [50.0, 50.0, 70.0, 70.0], [5.0, 5.0, 25.0, 25.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    proposals = Proposals(boxes, torch.tensor([[True, True, False, True], [True, True, True, False]]))
    gt = _targets([[[0.0, 0.0, 10.0, 10.0]], []], [[3], []])
    targets = _proposal_targets(proposals, gt, 16, coder)
    # Image 0: proposal 0 (IoU 0.9) and the appended gt are foreground, 1 and 3 background.
    assert targets.valid[0].sum() == 4
    fg = targets.gt_labels[0] > 0
    assert fg.sum() == 2 and (targets.gt_labels[0][fg] == 3).all()
    expected = coder.encode(targets.rois[0][fg], torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(2, 4))
    torch.testing.assert_close(targets.gt_deltas[0][fg], expected)
    assert (targets.gt_deltas[0][~fg] == 0).all()
    # Image 1 has no objects: its three valid proposals are background, the padding is not sampled.
    assert targets.valid[1].sum() == 3 and (targets.gt_labels[1] == 0).all()
    assert torch.isfinite(targets.gt_deltas).all()


def test_proposal_targets_foreground_fraction():
    torch.manual_seed(0)
    coder = BoxCoder((0.1, 0.1, 0.2, 0.2))
    jitter = torch.rand(1, 40, 4) * 2
    boxes = torch.tensor([20.0, 20.0, 60.0, 60.0]) + jitter  # 40 foreground proposals
    background = torch.tensor([100.0, 100.0, 130.0, 130.0]) + torch.rand(1, 40, 4)
    proposals = Proposals(torch.cat([boxes, background], 1), torch.ones(1, 80, dtype=torch.bool))
    gt = _targets([[[20.0, 20.0, 60.0, 60.0]]], [[1]])
    targets = _proposal_targets(proposals, gt, 32, coder)
    assert targets.rois.shape == (1, 32, 4)
    assert (targets.gt_labels > 0).sum() == 8  # 25% of 32
    assert targets.valid.all()


@pytest.mark.parametrize("num_samples", [4, 200])
def test_proposal_targets_shape_is_fixed(num_samples):
    proposals = Proposals(torch.tensor([[[0.0, 0.0, 10.0, 10.0]] * 5]), torch.ones(1, 5, dtype=torch.bool))
    gt = GroundTruth(torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.bool))
    targets = _proposal_targets(proposals, gt, num_samples, BoxCoder())
    assert targets.rois.shape == (1, min(num_samples, 6), 4)
    assert targets.valid.sum() == min(num_samples, 5)


def test_anchor_targets_boundary_thresh_minus_one_keeps_border_anchors():
    gt = _targets([[[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 52.0, 52.0]]], [[1, 2]])
    labels, _ = anchor_targets(
        ANCHORS,
        gt,
        torch.tensor([[100, 100]]),
        pos_iou_thresh=0.7,
        neg_iou_thresh=0.3,
        num_samples=100,
        positive_fraction=0.5,
        boundary_thresh=-1.0,
    )
    # Anchor 4 (IoU 1/3 with gt 0) is now between the thresholds; anchor 5 (IoU 0.19 with gt 1)
    # beats anchor 3 as gt 1's best anchor, so anchor 3 (IoU 0.017) becomes a negative.
    assert labels[0].tolist() == [1, 1, -1, 0, -1, 1, 0]


def test_anchor_targets_boundary_thresh_allows_a_margin():
    gt = _targets([[[0.0, 0.0, 10.0, 10.0]]], [[1]])
    common = dict(pos_iou_thresh=0.7, neg_iou_thresh=0.3, num_samples=100, positive_fraction=0.5)
    strict, _ = anchor_targets(ANCHORS, gt, torch.tensor([[100, 100]]), boundary_thresh=0.0, **common)
    margin, _ = anchor_targets(ANCHORS, gt, torch.tensor([[100, 100]]), boundary_thresh=5.0, **common)
    assert strict[0, 4] == -1 and strict[0, 5] == -1
    assert margin[0, 4] == -1  # inside the 5 px margin now, but IoU 1/3 is between the thresholds
    assert margin[0, 5] == 0  # 4 px past the bottom: kept, and IoU 0 with the only gt -> negative
