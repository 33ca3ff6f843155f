import math

import torch
from torchvision.ops import box_iou

from frcnn.models.anchors import AnchorGenerator, cell_anchors
from frcnn.models.box_coder import BoxCoder, clip_boxes
from frcnn.models.matching import MIN_BUCKET_WIDTH, pad_targets, pairwise_iou


def test_cell_anchors_are_centred_on_zero_with_the_seed_sizes():
    anchors = cell_anchors(16, [8, 16, 32], [0.5, 1.0, 2.0])
    assert anchors.shape == (9, 4)
    # Ratio-major order; every anchor is centred on (0, 0) and has area (16 * scale)^2.
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.zeros(9, 2))
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    torch.testing.assert_close(widths * heights, torch.tensor([128.0, 256, 512] * 3) ** 2)
    torch.testing.assert_close(heights / widths, torch.tensor([0.5] * 3 + [1.0] * 3 + [2.0] * 3))
    torch.testing.assert_close(anchors[3], torch.tensor([-64.0, -64.0, 64.0, 64.0]))
    torch.testing.assert_close(
        anchors[0], torch.tensor([-64 * math.sqrt(2), -32 * math.sqrt(2), 64 * math.sqrt(2), 32 * math.sqrt(2)])
    )


def test_rounded_cell_anchors_equal_torchvisions():
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors

    ours = cell_anchors(16, [1.5, 3.0, 6.0], [0.5, 1.0, 2.0], round_to_pixels=True)
    theirs = TorchvisionAnchors().generate_anchors([24, 48, 96], [0.5, 1.0, 2.0])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert not torch.equal(cell_anchors(16, [1.5, 3.0, 6.0], [0.5, 1.0, 2.0]), ours)  # 24 * sqrt(2) is not whole


def test_anchor_grid_layout_is_cell_major_then_anchor():
    generator = AnchorGenerator(base_size=16, scales=[1.0, 2.0], ratios=[1.0], stride=16)
    anchors = generator((2, 3))
    assert generator.num_anchors == 2
    assert anchors.shape == (2 * 3 * 2, 4)
    # Row (i * W + j) * A + a is anchor a of cell (i, j), centred on (16 j, 16 i).
    torch.testing.assert_close(
        anchors[(1 * 3 + 2) * 2 + 1], generator.cell_anchors[1] + torch.tensor([32.0, 16, 32, 16])
    )
    torch.testing.assert_close(anchors[0], torch.tensor([-8.0, -8.0, 8.0, 8.0]))


def test_anchor_offset_half_a_stride_is_the_seed_grid():
    # The seed centred cell (i, j)'s anchors on (8 + 16 j, 8 + 16 i): offset 0.5 of the stride.
    generator = AnchorGenerator(base_size=16, scales=[1.0], ratios=[1.0], stride=16, offset=0.5)
    anchors = generator((2, 3))
    torch.testing.assert_close(anchors[0], torch.tensor([0.0, 0.0, 16.0, 16.0]))
    torch.testing.assert_close(anchors[5], torch.tensor([32.0, 16.0, 48.0, 32.0]))


def test_strides_from_the_input_size_are_torchvisions():
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
    from torchvision.models.detection.image_list import ImageList

    # A 320x416 input's stride-64 level: 5x7 cells (10x13 at stride 32, halved, rounded up).
    generator = AnchorGenerator(
        base_size=32, scales=[1.0, 4.0], ratios=[0.5, 1.0, 2.0], stride=64, round_to_pixels=True
    )
    inputs = ImageList(torch.zeros(1, 3, 320, 416), [(320, 416)])
    theirs = TorchvisionAnchors(((32, 128),), ((0.5, 1.0, 2.0),))(inputs, [torch.zeros(1, 1, 5, 7)])[0]
    ours = generator((5, 7), input_size=(320, 416))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # Cell (1, 1)'s first anchor: 320 // 5 = 64 px down, 416 // 7 = 59 across; 64 and 64 without input_size.
    torch.testing.assert_close(ours[8 * 6] - ours[0], torch.tensor([59.0, 64, 59, 64]))
    torch.testing.assert_close(generator((5, 7))[8 * 6] - ours[0], torch.tensor([64.0, 64, 64, 64]))


def test_encode_decode_round_trip():
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(50, 2, generator=generator) * 100
    reference = torch.cat([reference, reference + 5 + torch.rand(50, 2, generator=generator) * 80], dim=1)
    boxes = torch.rand(50, 2, generator=generator) * 100
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(50, 2, generator=generator) * 80], dim=1)
    for std in [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]:
        coder = BoxCoder(std)
        deltas = coder.encode(reference, boxes)
        torch.testing.assert_close(coder.decode(reference, deltas), boxes, atol=1e-3, rtol=1e-4)


def test_encode_normalises_by_std_and_decode_clamps_scale():
    reference = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    box = torch.tensor([[5.0, 10.0, 25.0, 30.0]])  # centre (15, 20) vs (5, 10); size 20x20 vs 10x20
    plain = BoxCoder().encode(reference, box)
    torch.testing.assert_close(plain, torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]]))
    torch.testing.assert_close(
        BoxCoder((0.1, 0.1, 0.2, 0.2)).encode(reference, box), plain / torch.tensor([0.1, 0.1, 0.2, 0.2])
    )
    huge = BoxCoder().decode(reference, torch.tensor([[0.0, 0.0, 50.0, 50.0]]))
    torch.testing.assert_close(huge[0, 2] - huge[0, 0], torch.tensor(10.0 * 1000 / 16))
    assert torch.isfinite(huge).all()


def test_decode_runs_in_fp32_under_half_inputs():
    boxes = BoxCoder().decode(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(1, 4, dtype=torch.bfloat16))
    assert boxes.dtype == torch.float32


def test_clip_boxes_per_image():
    boxes = torch.tensor([[[-5.0, -5.0, 200.0, 50.0]], [[-5.0, 10.0, 200.0, 300.0]]])
    clipped = clip_boxes(boxes, torch.tensor([[100, 120], [64, 80]]))
    torch.testing.assert_close(clipped, torch.tensor([[[0.0, 0.0, 120.0, 50.0]], [[0.0, 10.0, 80.0, 64.0]]]))


def test_pairwise_iou_matches_torchvision_and_broadcasts():
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(2, 7, 2, generator=generator) * 50
    a = torch.cat([a, a + torch.rand(2, 7, 2, generator=generator) * 40], dim=2)
    b = torch.rand(2, 5, 2, generator=generator) * 50
    b = torch.cat([b, b + torch.rand(2, 5, 2, generator=generator) * 40], dim=2)
    iou = pairwise_iou(a, b)
    assert iou.shape == (2, 7, 5)
    for i in range(2):
        torch.testing.assert_close(iou[i], box_iou(a[i], b[i]))
    torch.testing.assert_close(pairwise_iou(a[0][None], b), torch.stack([box_iou(a[0], b[i]) for i in range(2)]))
    assert pairwise_iou(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)).item() == 0.0


def test_pad_targets_places_boxes_and_marks_padding():
    targets = [
        {"boxes": torch.tensor([[1.0, 2, 3, 4]]), "labels": torch.tensor([3]), "difficult": torch.tensor([False])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.tensor([[5.0, 6, 7, 8], [9.0, 10, 11, 12]]), "labels": torch.tensor([1, 2])},
    ]
    gt = pad_targets(targets, torch.device("cpu"))
    assert gt.boxes.shape == (3, 2, 4)
    assert gt.valid.tolist() == [[True, False], [False, False], [True, True]]
    assert gt.labels.tolist() == [[3, 0], [0, 0], [1, 2]]
    torch.testing.assert_close(gt.boxes[2, 1], torch.tensor([9.0, 10, 11, 12]))
    empty = pad_targets(
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], torch.device("cpu")
    )
    assert empty.boxes.shape == (1, 1, 4) and not empty.valid.any()
    bucketed = pad_targets(targets[2:] + targets[:1], torch.device("cpu"), bucket=True)  # counts 2, 1
    assert bucketed.boxes.shape == (2, MIN_BUCKET_WIDTH, 4)
    three = [{"boxes": torch.ones(3, 4), "labels": torch.ones(3, dtype=torch.int64)}]
    assert pad_targets(three, torch.device("cpu"), bucket=True).valid.tolist() == [[True] * 3 + [False] * 13]
    many = [{"boxes": torch.ones(17, 4), "labels": torch.ones(17, dtype=torch.int64)}]
    assert pad_targets(many, torch.device("cpu"), bucket=True).boxes.shape == (1, 32, 4)


def test_feature_cells_are_centred_where_offset_zero_puts_the_anchors():
    """The receptive field of stride-16 cell j of the C4 trunk is centred on input pixel 16 j
    (pixel index; its centre is at 16 j + 0.5 in box coordinates): anchor offset 0 puts
    anchors there, the seed's 0.5 puts them 7.5 px off. Geometry only (kernel sizes, strides,
    symmetric padding), measured as the centroid of the input gradient of one cell through a
    network made linear and positive (constant weights, identity norms), so nothing cancels."""
    from frcnn.models.backbone import build_backbone
    from frcnn.models.config import BackboneConfig

    trunk, _ = build_backbone(BackboneConfig(depth=50, weights=None, norm="frozen_bn", frozen_stages=0))
    with torch.no_grad():
        for name, tensor in trunk.state_dict().items():
            if name.endswith("weight"):
                tensor.fill_(1.0 / tensor[0].numel() if tensor.dim() == 4 else 1.0)
            elif name.endswith(("bias", "running_mean")):
                tensor.zero_()
            elif name.endswith("running_var"):
                tensor.fill_(1.0)
    # Max-pooling routes the gradient of a flat window to its first element (a tie-break, not
    # geometry): average over the same 3x3 / 2 window instead.
    trunk.maxpool = torch.nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
    # Wide enough that the columns of the receptive field (~430 px) of the middle cells stay
    # inside the image; the rows may be cut: every path is symmetric in x on its own.
    image = torch.ones(1, 3, 64, 1024, requires_grad=True)  # positive input: every ReLU passes
    features = trunk(image)
    assert features.shape[-1] == 64
    for j in (30, 32, 35):
        (grad,) = torch.autograd.grad(features[0, :, 2, j].sum(), image, retain_graph=True)
        weight = grad[0].sum(dim=(0, 1))  # [W]: influence of each input column
        centroid = (weight * torch.arange(1024.0)).sum() / weight.sum()
        assert abs(float(centroid) - 16 * j) < 1e-2
