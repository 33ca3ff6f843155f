"""The boxes against a model's anchors (frcnn.data.anchor_fit): anchor shapes as the models make
them, shape-only IoU, the resize, the share under the RPN's threshold and the suggested settings."""

import numpy as np
import pytest
import torch

from frcnn.cli.check_dataset import anchor_spec
from frcnn.data import anchor_fit
from frcnn.data.anchor_fit import (
    AnchorSpec,
    anchor_shapes,
    anchor_warning,
    best_centred_iou,
    fit_anchors,
    format_anchor_fit,
    resized_box_shapes,
)
from frcnn.data.annotation_index import AnnotationIndex
from frcnn.models.anchors import cell_anchors
from frcnn.models.fpn import fpn_backbone_class
from frcnn.models.rpn import build_rpn
from tests.helpers.configs import compose_config

C4 = AnchorSpec(base_sizes=(16.0,), scales=(8.0, 16.0, 32.0), ratios=(0.5, 1.0, 2.0))  # 128, 256, 512 px


def squares(*sides: float) -> np.ndarray:
    return np.array([[side, side] for side in sides], dtype=np.float64)


@pytest.mark.parametrize("round_to_pixels", [False, True])
def test_anchor_shapes_are_the_models_cell_anchors(round_to_pixels):
    scales, ratios = [1.5, 3.0, 6.0], [0.5, 1.0, 2.0, 3.0]
    theirs = cell_anchors(16, scales, ratios, round_to_pixels)
    widths_heights = (theirs[:, 2:] - theirs[:, :2]).double().numpy()
    np.testing.assert_allclose(anchor_shapes([16], scales, ratios, round_to_pixels), widths_heights, atol=1e-4)


@pytest.mark.parametrize("model", ["resnet50_c4", "resnet50_fpn", "mobilenet_v3_large_fpn"])
def test_the_commands_anchor_spec_is_what_the_rpn_builds(model):
    cfg = compose_config("check_dataset", f"model={model}").model
    strides = fpn_backbone_class(cfg.backbone).strides if cfg.architecture == "fpn" else None
    rpn = build_rpn(cfg.rpn, cfg.anchors, 8, strides=strides)
    built = torch.cat([g.cell_anchors for g in rpn.anchor_generators])
    spec = anchor_spec(cfg)
    np.testing.assert_allclose(spec.shapes(), (built[:, 2:] - built[:, :2]).double().numpy(), atol=1e-4)
    assert spec.pos_iou_thresh == cfg.rpn.pos_iou_thresh == 0.7
    sizes = {"resnet50_c4": [128, 256, 512], "resnet50_fpn": [32, 64, 128, 256, 512]}
    assert spec.sizes() == sizes.get(model, [32, 64, 128, 256, 512])


def test_best_centred_iou():
    anchors = np.array([[40.0, 40.0], [20.0, 10.0]])
    # (10, 10) in (20, 10): 100 / 200; (10, 20) across (20, 10): 100 / 300; an exact fit: 1
    boxes = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 10.0]])
    np.testing.assert_allclose(best_centred_iou(boxes, anchors), [0.5, 1 / 3, 1.0])
    assert best_centred_iou(boxes, np.zeros((0, 2))).tolist() == [0, 0, 0]


def test_boxes_are_scaled_as_the_test_resize_scales_their_image():
    index = AnnotationIndex.build(
        image_ids=["a", "b"], image_dirs=["."], dir_index=[0, 0], file_names=["a.jpg", "b.jpg"],
        heights=[100, 100], widths=[200, 1000], boxes_per_image=[1, 2],
        boxes=[[0, 0, 40, 20], [0, 0, 100, 50], [10, 10, 20, 20]], labels=[1, 1, 2],
        difficult=[False] * 3, iscrowd=[False] * 3, object_ids=[0, 1, 2],
    )  # fmt: skip
    keep = np.array([True, True, False])
    # a: short side 100 -> 50 (x0.5); b: the long side 1000 caps it at 400 (x0.4)
    np.testing.assert_allclose(resized_box_shapes(index, keep, 50, 400), [[20, 10], [40, 20]])


def test_boxes_the_anchors_fit_give_no_warning():
    fit = fit_anchors(squares(128, 256, 512, 130), C4, 600, 1000)
    assert fit.below == 0 and fit.suggestion is None and anchor_warning(fit) is None
    lines = format_anchor_fit(fit, "train")
    assert "anchor sizes px: 128, 256, 512 (base_size 16 x scales [8, 16, 32]; ratios (h/w) [0.5, 1, 2])" in lines[4]
    assert lines[-1] == "  under model.rpn.pos_iou_thresh 0.7: 0 of 4 boxes (0.0%)"


def test_small_boxes_name_the_smaller_scales_that_fit_them():
    fit = fit_anchors(squares(*[32] * 10, *[128] * 10), C4, 600, 1000)
    assert (fit.below, fit.smaller, fit.larger) == (10, 10, 0)
    assert fit.suggestion.scales == (2, 8, 16, 32) and fit.suggestion.covered == 10  # 16 x 2 = 32 px
    warning = anchor_warning(fit)
    assert warning.startswith("50.0% of the 20 boxes (10) have no anchor shape with IoU >= 0.7")
    assert "10 smaller than the smallest anchor (128 px)" in warning
    assert warning.endswith("model.anchors.scales=[2,8,16,32] would bring 10 of them to 0.7 (0.0% left under it)")


def test_elongated_boxes_name_the_ratio_that_fits_them():
    tall = np.array([[64.0, 256.0]] * 4 + [[256.0, 256.0]] * 4)  # h/w 4, size 128: IoU 0.55 with h/w 2
    fit = fit_anchors(tall, C4, 600, 1000)
    assert fit.below == 4 and fit.smaller == fit.larger == 0
    assert fit.suggestion.ratios == (0.5, 1, 2, 4) and fit.suggestion.scales == C4.scales
    assert anchor_warning(fit) is None  # 0.55: under 0.7, not poorly covered (POORLY_COVERED_IOU)
    taller = np.array([[45.254834, 362.038672]] * 4 + [[256.0, 256.0]] * 4)  # h/w 8, size 128: IoU 1/3
    warning = anchor_warning(fit_anchors(taller, C4, 600, 1000))
    assert "4 between the sizes or of other aspect ratios" in warning
    assert "model.anchors.ratios=[0.5,1,2,8] would bring 4 of them" in warning


def test_boxes_between_the_sizes_get_the_midpoint_scale():
    # 181 px is sqrt(128 * 256): IoU 0.5 with both neighbours; scale 11.31 (181 px) fits it
    fit = fit_anchors(squares(*[181] * 3, 256), C4, 600, 1000)
    assert fit.suggestion.scales == (8, 11.31, 16, 32) and fit.suggestion.covered == 3
    # FPN with one scale per level: the midpoint is with the next level's size (x2)
    fpn = AnchorSpec(base_sizes=(32.0, 64.0, 128.0), scales=(1.0,), ratios=(1.0,))
    fit = fit_anchors(squares(*[45] * 3, 64), fpn, 600, 1000)
    assert fit.suggestion.scales == (1, 1.414)


def test_nothing_in_reach_is_said():
    fit = fit_anchors(squares(1, 1, 1, 128), C4, 600, 1000)  # 1 px: beyond 2^4 below 128 px
    assert fit.suggestion.covered == 0
    assert anchor_warning(fit).endswith(
        "no scales within a factor 16 or ratios within 8 of the present ones bring them to 0.7"
    )


def test_many_boxes_are_searched_on_a_sample(monkeypatch):
    monkeypatch.setattr(anchor_fit, "SAMPLE", 50)
    fit = fit_anchors(squares(*[32] * 200, *[64] * 200), C4, 600, 1000)
    assert fit.below == 400 and fit.suggestion.scales == (2, 4, 8, 16, 32)  # two rounds: 64 px, then 32
    assert fit.suggestion.covered == 400  # every sampled box reached: all of them, scaled up
