import pytest
import torch

from frcnn.models.box_coder import BoxCoder
from frcnn.models.faster_rcnn import build_model
from frcnn.models.roi_head import postprocess_detections
from frcnn.models.rpn import RPNHead, propose


def test_rpn_head_shapes_and_init():
    torch.manual_seed(0)
    head = RPNHead(32, 16, 9)
    logits, deltas = head(torch.randn(2, 32, 5, 7))
    assert logits.shape == (2, 5 * 7 * 9) and deltas.shape == (2, 5 * 7 * 9, 4)
    assert abs(head.conv.weight.std().item() - 0.01) < 0.002
    assert (head.objectness.bias == 0).all() and (head.deltas.bias == 0).all()


def _propose(anchors, logits, sizes, **kwargs):
    settings = {"pre_nms_top_n": 100, "post_nms_top_n": 10, "nms_thresh": 0.7, "min_size": 4.0} | kwargs
    deltas = torch.zeros(logits.shape[0], logits.shape[1], 4)
    return propose(anchors, logits, deltas, torch.tensor(sizes), BoxCoder(), **settings)


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
    assert proposals.boxes.shape == (2, 5, 4)
    assert proposals.valid.tolist() == [[True, True, True, False, False]] * 2
    torch.testing.assert_close(proposals.boxes[0, :3], torch.tensor([[1.0, 1, 21, 21], [40.0, 40, 70, 60], [30.0, 0, 50, 20]]))
    top = _propose(anchors, logits, [[60, 80], [60, 80]], post_nms_top_n=2)
    assert top.boxes.shape == (2, 2, 4) and top.valid.all()
    pre = _propose(anchors, logits, [[60, 80], [60, 80]], pre_nms_top_n=2)  # the 2 best: anchors 1 and 2
    assert pre.valid.sum(1).tolist() == [2, 2]


def test_propose_images_do_not_suppress_each_other():
    anchors = torch.tensor([[0.0, 0.0, 20.0, 20.0], [50.0, 50.0, 60.0, 60.0]])
    logits = torch.tensor([[3.0, -1.0], [-2.0, 1.0]])
    proposals = _propose(anchors, logits, [[100, 100], [100, 100]])
    torch.testing.assert_close(proposals.boxes[0], anchors)
    torch.testing.assert_close(proposals.boxes[1], anchors.flip(0))


def test_postprocess_score_threshold_classwise_nms_and_ordering():
    rois = torch.tensor([[0.0, 0.0, 20.0, 20.0], [1.0, 1.0, 21.0, 21.0], [50.0, 50.0, 80.0, 80.0], [0.0, 0.0, 20.0, 20.0]])
    image_index = torch.tensor([0, 0, 0, 1])
    # Three classes + background; rois 0 and 1 overlap (IoU 0.82): NMS keeps the best of each class,
    # roi 0 as class 1 and roi 1 as class 2; roi 2 is background, roi 3 is in another image.
    probs = torch.tensor([[0.1, 0.8, 0.1, 0.0], [0.1, 0.5, 0.4, 0.0], [0.97, 0.01, 0.01, 0.01], [0.2, 0.0, 0.0, 0.8]])
    detections = postprocess_detections(
        probs.log(), torch.zeros(4, 4, 4), rois, image_index, torch.tensor([[100, 100], [100, 100]]), BoxCoder(),
        score_thresh=0.05, nms_thresh=0.5, detections_per_image=100,
    )
    assert len(detections) == 2
    first = detections[0]
    assert first["labels"].tolist() == [1, 2]
    torch.testing.assert_close(first["scores"], torch.tensor([0.8, 0.4]))
    torch.testing.assert_close(first["boxes"], rois[[0, 1]])
    assert detections[1]["labels"].tolist() == [3]
    capped = postprocess_detections(
        probs.log(), torch.zeros(4, 4, 4), rois, image_index, torch.tensor([[100, 100], [100, 100]]), BoxCoder(),
        score_thresh=0.05, nms_thresh=0.5, detections_per_image=1,
    )
    assert capped[0]["scores"].tolist() == pytest.approx([0.8])
    assert capped[1]["labels"].tolist() == [3]


@pytest.mark.parametrize("pooler", ["roi_pool", "roi_align"])
def test_roi_poolers(pooler, tiny_model_config):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(pooler=pooler, roi_size=6), num_classes=2)
    head = model.roi_head
    features = torch.arange(2 * 256 * 8 * 8, dtype=torch.float32).reshape(2, 256, 8, 8)
    rois = torch.tensor([[0.0, 0.0, 127.0, 127.0], [16.0, 16.0, 48.0, 112.0]])
    pooled = head.box_pooler([features], rois, torch.tensor([0, 1]))
    assert pooled.shape == (2, 256, 6, 6)
    if pooler == "roi_pool":  # max pooling: the whole-image RoI's last bin holds the map's last cell
        assert pooled[0, 0, -1, -1] == features[0, 0, -1, -1]
    else:  # bilinear: values strictly between the map's extremes
        assert features[1].min() < pooled[1].min() and pooled[1].max() < features[1].max()
    # Features of image 1 are larger than image 0's everywhere: the RoI's image index is used.
    assert pooled[1].min() > features[0].max()
    logits, deltas = head.predict([features], rois, torch.tensor([0, 1]))
    assert logits.shape == (2, 3) and deltas.shape == (2, 3, 4)


def test_unknown_pooler_is_rejected(tiny_model_config):
    with pytest.raises(ValueError, match="roi_head.pooler"):
        build_model(tiny_model_config(pooler="roi_magic"), num_classes=2)


@pytest.mark.parametrize("pooler", ["roi_pool", "roi_align"])
def test_bf16_autocast_training_keeps_boxes_and_losses_fp32(pooler, two_images, tiny_model_config):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(pooler=pooler), num_classes=2).train()
    images, sizes, targets = two_images
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, sizes, targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    features = torch.randn(1, 256, 8, 8).bfloat16()
    rois = torch.tensor([[1001.3, 3.7, 1023.9, 17.2]])  # bf16 would round 1001.3 to 1000
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = model.roi_head.box_pooler([features], rois, torch.tensor([0]))
    expected = model.roi_head.box_pooler([features.float()], rois, torch.tensor([0]))
    torch.testing.assert_close(pooled.float(), expected, atol=1e-2, rtol=1e-2)
