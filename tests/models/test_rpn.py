import torch

from frcnn.models.faster_rcnn import build_model
from frcnn.models.proposals import propose
from frcnn.models.rpn import RPNHead


def test_rpn_head_shapes_and_init():
    torch.manual_seed(0)
    head = RPNHead(32, 16, 9)
    logits, deltas = head(torch.randn(2, 32, 5, 7))
    assert logits.shape == (2, 5 * 7 * 9) and deltas.shape == (2, 5 * 7 * 9, 4)
    assert abs(head.conv.weight.std().item() - 0.01) < 0.002
    assert (head.objectness.bias == 0).all() and (head.deltas.bias == 0).all()


def test_rpn_proposals_have_fixed_shapes_and_match_the_proposal_layer(tiny_model_config):
    """The RPN's proposals are the proposal layer's on its per-level predictions, with the test
    settings in eval mode, and the same shapes at two feature sizes."""
    torch.manual_seed(0)
    rpn = build_model(tiny_model_config(), num_classes=2).rpn.eval()
    sizes = torch.tensor([[64, 80], [48, 64]])
    for height, width in ((4, 5), (12, 16)):  # 180 anchors (fewer than pre_nms_top_n_test = 200), 1728
        features = [torch.randn(2, 256, height, width)]
        with torch.no_grad():
            proposals, losses = rpn(features, sizes)
            logits, deltas = rpn.head(features[0])
        assert losses == {}
        assert proposals.boxes.shape == (2, 30, 4) and proposals.valid.shape == (2, 30)
        anchors = [rpn.anchor_generators[0]((height, width))]
        expected = propose(anchors, [logits], [deltas], sizes, rpn.box_coder, pre_nms_top_n=200, post_nms_top_n=30,
                           nms_thresh=rpn.nms_thresh, min_size=rpn.min_size)  # fmt: skip
        assert torch.equal(proposals.valid, expected.valid) and proposals.valid.any()
        assert torch.equal(proposals.boxes[proposals.valid], expected.boxes[expected.valid])
