"""The detection stage: score threshold, per-class NMS, the top D per image, its fixed, padded
outputs, and equality with a per-image, per-class reference."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from frcnn.models.box_coder import BoxCoder, clip_boxes
from frcnn.models.postprocess import MIN_BOX_SIZE, Detections, max_detections, postprocess_detections
from frcnn.models.proposals import Proposals

SETTINGS = {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_image": 100}


def _postprocess(pred_logits, pred_deltas, proposals, image_sizes, **kwargs):
    image_index, slot = proposals.valid.nonzero(as_tuple=True)
    return postprocess_detections(pred_logits, pred_deltas, proposals, image_index, slot, torch.tensor(image_sizes),
                                  BoxCoder(), **(SETTINGS | kwargs))  # fmt: skip


def test_score_threshold_classwise_nms_and_ordering():
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [1.0, 1.0, 21.0, 21.0], [50.0, 50.0, 80.0, 80.0]],
                          [[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # fmt: skip
    proposals = Proposals(boxes, torch.tensor([[True, True, True], [True, False, False]]))
    # Three classes + background; proposals 0 and 1 overlap (IoU 0.82): NMS keeps the best of each
    # class, 0 as class 1 and 1 as class 2; proposal 2 is background; image 1 has one proposal.
    probs = torch.tensor([[0.1, 0.8, 0.1, 0.0], [0.1, 0.5, 0.4, 0.0], [0.97, 0.01, 0.01, 0.01], [0.2, 0.0, 0.0, 0.8]])
    detections = _postprocess(probs.log(), torch.zeros(4, 4, 4), proposals, [[100, 100], [100, 100]])
    assert detections.boxes.shape == (2, 9, 4) and detections.scores.shape == detections.labels.shape == (2, 9)
    assert detections.num_detections.tolist() == [2, 1]
    first, second = detections.per_image()
    assert first["labels"].tolist() == [1, 2]
    torch.testing.assert_close(first["scores"], torch.tensor([0.8, 0.4]))
    torch.testing.assert_close(first["boxes"], boxes[0, :2])
    assert second["labels"].tolist() == [3]
    # The padding rows are zeros.
    assert not detections.boxes[0, 2:].any() and not detections.scores[0, 2:].any()
    assert not detections.labels[0, 2:].any()
    sizes = [[100, 100], [100, 100]]
    capped = _postprocess(probs.log(), torch.zeros(4, 4, 4), proposals, sizes, detections_per_image=1)
    assert capped.scores.shape == (2, 1)
    assert capped.scores[:, 0].tolist() == pytest.approx([0.8, 0.8]) and capped.labels[:, 0].tolist() == [1, 3]


def test_boxes_outside_the_image_and_padding_are_never_detections():
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [120.0, 120.0, 150.0, 150.0], [0.0, 0.0, 0.0, 0.0]]])
    proposals = Proposals(boxes, torch.tensor([[True, True, False]]))
    logits = torch.zeros(2, 3)  # two classes: every score 1/3
    detections = _postprocess(logits, torch.zeros(2, 3, 4), proposals, [[100, 100]], score_thresh=0.0)
    # Proposal 1 lies past the 100x100 image: clipped to a point, dropped; padding never selected.
    assert detections.num_detections.tolist() == [2]
    torch.testing.assert_close(detections.boxes[0, :2], boxes[0, [0, 0]])
    assert sorted(detections.labels[0, :2].tolist()) == [1, 2]


def test_detections_per_image_gives_the_fixed_output_count():
    assert max_detections(100, 30, 2) == 60 and max_detections(100, 300, 20) == 100
    proposals = Proposals(torch.tensor([[[0.0, 0.0, 20.0, 20.0]]]), torch.tensor([[False]]))
    detections = _postprocess(torch.zeros(0, 3), torch.zeros(0, 3, 4), proposals, [[50, 50]])
    assert detections.boxes.shape == (1, 2, 4) and detections.num_detections.tolist() == [0]
    assert [len(d["boxes"]) for d in detections.per_image()] == [0]


def reference_detections(pred_logits, pred_deltas, rois, image_index, image_sizes, coder, *, score_thresh, nms_thresh,
                         detections_per_image):  # fmt: skip
    """The detection stage image by image and class by class, with nothing padded."""
    scores = F.softmax(pred_logits, dim=1)[:, 1:]
    boxes = clip_boxes(coder.decode(rois[:, None], pred_deltas[:, 1:]), image_sizes[image_index])
    results = []
    for b in range(len(image_sizes)):
        rows, per_class = image_index == b, []
        for c in range(scores.shape[1]):
            class_boxes, class_scores = boxes[rows, c], scores[rows, c]
            sides = class_boxes[:, 2:] - class_boxes[:, :2]
            keep = (class_scores > score_thresh) & (sides >= MIN_BOX_SIZE).all(dim=1)
            class_boxes, class_scores = class_boxes[keep], class_scores[keep]
            keep = nms(class_boxes, class_scores, nms_thresh)
            per_class.append((class_boxes[keep], class_scores[keep], torch.full((len(keep),), c + 1)))
        image_boxes, image_scores, labels = (torch.cat(parts) for parts in zip(*per_class))
        top = image_scores.argsort(descending=True)[:detections_per_image]
        results.append({"boxes": image_boxes[top], "scores": image_scores[top], "labels": labels[top]})
    return results


@pytest.mark.parametrize("detections_per_image", [100, 7])
def test_postprocess_equals_the_per_image_reference(detections_per_image):
    generator = torch.Generator().manual_seed(0)
    num_slots, num_classes = 40, 3
    corners = torch.rand(2, num_slots, 2, generator=generator) * 80
    boxes = torch.cat([corners, corners + 5 + torch.rand(2, num_slots, 2, generator=generator) * 40], dim=2)
    valid = torch.rand(2, num_slots, generator=generator) < 0.8
    valid[:, 0] = True
    proposals = Proposals(boxes, valid)
    image_index, slot = valid.nonzero(as_tuple=True)
    pred_logits = torch.randn(len(slot), num_classes + 1, generator=generator) * 2
    pred_deltas = torch.randn(len(slot), num_classes + 1, 4, generator=generator) * 0.5
    image_sizes = torch.tensor([[100, 120], [90, 80]])
    coder = BoxCoder((0.1, 0.1, 0.2, 0.2))
    settings = SETTINGS | {"detections_per_image": detections_per_image}
    detections = postprocess_detections(
        pred_logits, pred_deltas, proposals, image_index, slot, image_sizes, coder, **settings
    )
    assert isinstance(detections, Detections) and detections.boxes.shape == (2, detections_per_image, 4)
    expected = reference_detections(pred_logits, pred_deltas, boxes[image_index, slot], image_index, image_sizes, coder,
                                    **settings)  # fmt: skip
    for got, want in zip(detections.per_image(), expected):
        assert len(want["boxes"]) > 5
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
