"""RoI pooling: the [R, 5] RoI format, the C4 pooler, and the FPN's multi-level RoIAlign against
torchvision's MultiScaleRoIAlign."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from frcnn.models.faster_rcnn import build_model
from frcnn.models.fpn import FPN_STRIDES, POOLED_LEVELS
from frcnn.models.poolers import MultiLevelRoIAlign, indexed_rois


def test_indexed_rois_put_the_image_index_first_in_float32():
    rois = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], dtype=torch.float64)
    indexed = indexed_rois(rois, torch.tensor([1, 0]))
    assert indexed.dtype == torch.float32
    assert indexed.tolist() == [[1.0, 1.0, 2.0, 3.0, 4.0], [0.0, 5.0, 6.0, 7.0, 8.0]]


def test_multi_level_roi_align_equals_torchvisions_in_roi_order():
    """Every level used, RoIs of both images interleaved: rows come back in RoI order."""
    generator = torch.Generator().manual_seed(0)
    height, width = 480, 640
    strides = FPN_STRIDES[:POOLED_LEVELS]
    features = [torch.randn(2, 8, height // s, width // s, generator=generator) for s in strides]
    sides = torch.tensor([40.0, 460, 130, 90, 260, 200, 400, 470, 60, 150, 300, 450])  # levels 0 3 1 0 2 1 2 3 ...
    corners = torch.rand(len(sides), 2, generator=generator) * (torch.tensor([width, height]) - sides[:, None])
    rois = torch.cat([corners, corners + sides[:, None]], dim=1)  # squares: sqrt(area) = side
    image_index = torch.tensor([0, 1] * 6)
    pooler = MultiLevelRoIAlign(output_size=7, sampling_ratio=2, strides=strides)
    assert torch.bincount(pooler.levels(rois), minlength=4).tolist() == [3, 3, 3, 3]
    pooled = pooler([*features, features[-1][:, :, ::2, ::2]], rois, image_index)  # P6 is not pooled
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = reference(dict(zip("0123", features)), [rois[image_index == i] for i in range(2)], [(height, width)] * 2)
    by_image = torch.cat([(image_index == i).nonzero()[:, 0] for i in range(2)])  # torchvision's row order
    assert pooled.shape == (12, 8, 7, 7)
    torch.testing.assert_close(pooled[by_image], expected, rtol=0, atol=1e-6)


def test_multi_level_roi_align_without_rois_on_some_levels():
    pooler = MultiLevelRoIAlign(output_size=2, sampling_ratio=2, strides=FPN_STRIDES[:POOLED_LEVELS])
    features = [torch.randn(1, 3, 64 // s, 64 // s) for s in FPN_STRIDES[:POOLED_LEVELS]]
    rois = torch.tensor([[0.0, 0.0, 20.0, 20.0], [4.0, 4.0, 30.0, 30.0]])  # both on P2
    pooled = pooler(features, rois, torch.zeros(2, dtype=torch.int64))
    assert pooled.shape == (2, 3, 2, 2)
    assert not torch.equal(pooled[0], pooled[1])
    assert pooler(features, rois[:0], torch.zeros(0, dtype=torch.int64)).shape == (0, 3, 2, 2)


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
