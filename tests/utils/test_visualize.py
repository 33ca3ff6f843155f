"""frcnn/utils/visualize.py: detections and ground truth drawn readably."""

import torch

from frcnn.utils.visualize import OUTLINE, caption_place, class_colors, draw_detections


def test_draw_detections_draws_only_confident_boxes_in_class_colours():
    image = torch.zeros(3, 64, 96, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 40.0, 50.0], [50.0, 5.0, 90.0, 30.0]])
    labels = torch.tensor([2, 1])
    drawn = draw_detections(image, boxes, labels, torch.tensor([0.9, 0.3]), ["cat", "dog"], score_threshold=0.5)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 64, 96)
    assert tuple(drawn[:, 30, 11].tolist()) == class_colors(2)[1]  # left edge of the dog box
    assert tuple(drawn[:, 30, 10].tolist()) == OUTLINE  # its dark outline
    assert drawn[:, 20, 90].sum() == 0  # right edge of the 0.3 box: not drawn
    float_image = draw_detections(torch.full((3, 64, 96), 0.5), boxes, labels, torch.tensor([0.9, 0.9]), ["cat", "dog"])
    assert float_image.dtype == torch.uint8 and float_image[0, 60, 5] == 128


def test_captions_never_overlap_and_ground_truth_is_dashed_with_a_legend():
    image = torch.full((3, 120, 160), 60, dtype=torch.uint8)
    boxes = torch.tensor([[20.0, 30.0, 80.0, 90.0], [22.0, 32.0, 82.0, 92.0], [24.0, 34.0, 84.0, 94.0]])
    labels, scores = torch.tensor([1, 2, 1]), torch.tensor([0.9, 0.8, 0.7])
    ground_truth = torch.tensor([[100.0, 10.0, 150.0, 60.0]])
    drawn = draw_detections(image, boxes, labels, scores, ["circle", "square"], ground_truth=ground_truth)
    top_edge = drawn[:, 10, 102:148].T.tolist()  # along the dashed top edge: white dashes and dark gaps
    assert [255, 255, 255] in top_edge and list(OUTLINE) in top_edge
    bottom_row = drawn[:, 118, :].T.tolist()  # the legend strip along the bottom edge
    assert bottom_row.count(list(OUTLINE)) > 100

    taken = []
    for box in boxes.tolist():
        place = caption_place(box, (50, 12), (160, 120), taken)
        assert place is not None and not any(place[0] < t[2] and t[0] < place[2] and place[1] < t[3] and t[1] < place[3]
                                             for t in taken)  # fmt: skip
        taken.append(place)
    assert caption_place([0.0, 0.0, 160.0, 12.0], (160, 12), (160, 24), [(0, 0, 160, 24)]) is None


def test_ground_truth_carries_its_class_names():
    image = torch.full((3, 120, 160), 60, dtype=torch.uint8)
    none = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    ground_truth = torch.tensor([[60.0, 40.0, 150.0, 100.0]])
    plain = draw_detections(image, *none, ["circle", "square"], ground_truth=ground_truth)
    named = draw_detections(
        image, *none, ["circle", "square"], ground_truth=ground_truth, ground_truth_labels=torch.tensor([2])
    )
    changed = (plain != named).any(dim=0).nonzero()  # only the caption differs: above the box, white on dark
    assert len(changed) > 20 and changed[:, 0].max() <= 40 and changed[:, 1].min() >= 60
    assert (named[:, 26:41, 60:150].min(dim=0).values > 180).any()  # light text (antialiased white)


def test_a_small_image_is_enlarged_to_stay_readable():
    image = torch.full((3, 93, 124), 60, dtype=torch.uint8)
    boxes, labels, scores = torch.tensor([[10.0, 10.0, 50.0, 50.0]]), torch.tensor([1]), torch.tensor([0.9])
    drawn = draw_detections(image, boxes, labels, scores, ["circle"], ground_truth=boxes, min_side=320)
    assert tuple(drawn.shape) == (3, 320, 427)
    left_edge = drawn[:, 60:150, 34:38]  # the box's left edge, scaled by 320 / 93 (x = 10 -> 34)
    assert list(class_colors(1)[0]) in left_edge.reshape(3, -1).T.tolist()
    assert tuple(draw_detections(image, boxes, labels, scores, ["circle"]).shape) == (3, 93, 124)
