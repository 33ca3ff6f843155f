"""The reference detector: torchvision's ``FasterRCNN`` composed as an frcnn model.

:func:`torchvision_detector` builds ``torchvision.models.detection.FasterRCNN`` with the same
parts and settings as a given frcnn :class:`~frcnn.models.FasterRCNN` and a copy of its
weights: the backbone (C4: conv1..layer3; FPN: ResNet + pyramid) and box head modules, the RPN
head, anchor sizes and ratios, proposal counts, NMS and IoU thresholds, sampling sizes, RoI
pooling, box-coder weights and predictor. Only torchvision's own conventions differ (see
:data:`TORCHVISION_CONVENTIONS`). It is the yardstick of the parity tests
(``tests/bench/test_reference.py``, ``tests/models/test_fpn.py``) and of
``scripts/benchmark.py`` (speed: section ``model``; training: section ``accuracy``).

The reference takes already resized and normalised images: its transform neither resizes nor
normalises, and pads with zeros to a multiple of 32 as frcnn's collate does. So
``reference(list_of_unpadded_images, targets)`` sees exactly the batch frcnn sees.
"""

import copy
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from frcnn.models.config import LevelSizes
from frcnn.models.faster_rcnn import FasterRCNN, build_model

# frcnn model-config values under which frcnn follows torchvision's conventions; with them,
# the same weights and input give the same proposals, detections and losses (parity tests).
# Conventions with no switch (documented in docs/parity.md): proposals are ranked by objectness
# logit (torchvision: sigmoid probability, equal above ~17), and a gt box that overlaps no
# anchor gets no best-anchor positive (torchvision marks every anchor at IoU 0 positive).
TORCHVISION_CONVENTIONS = {
    "anchors.offset": 0.0,  # cell j's anchors centred on pixel stride * j
    "anchors.round": True,  # cell anchors rounded to whole pixels
    "rpn.boundary_thresh": -1.0,  # anchors crossing the image border take part in training
    "rpn.min_size_after_top_n": True,  # top-k by objectness first, then drop small boxes
    "roi_head.loc_sigma": 3.0,  # RoI box loss smooth-L1 with beta 1/9
}


class RPNHeadLists(nn.Module):
    """frcnn's RPN head behind torchvision's head interface (lists of per-level maps)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: list[torch.Tensor]):
        hidden = [torch.relu(self.head.conv(f)) for f in features]
        return [self.head.objectness(h) for h in hidden], [self.head.deltas(h) for h in hidden]


class PyramidAsDict(nn.Module):
    """frcnn's FPN backbone (a list P2..P6) behind torchvision's interface (a dict of maps)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.out_channels = backbone.out_channels

    def forward(self, images: torch.Tensor) -> OrderedDict:
        return OrderedDict((str(level), feature) for level, feature in enumerate(self.backbone(images)))


class SingleLevelPooler(nn.Module):
    """RoIPool or aligned RoIAlign on the one C4 feature map, behind torchvision's
    ``box_roi_pool`` interface (``MultiScaleRoIAlign`` covers plain RoIAlign)."""

    def __init__(self, pooler: str, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool):
        super().__init__()
        self.pooler, self.output_size, self.spatial_scale = pooler, output_size, spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, features: dict, proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        feature = features["0"]
        if self.pooler == "roi_pool":
            return roi_pool(feature, proposals, self.output_size, self.spatial_scale)
        return roi_align(feature, proposals, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


class NoResizeTransform(GeneralizedRCNNTransform):
    """torchvision's transform without the resize (inputs come resized and normalised)."""

    def __init__(self, size_divisible: int = 32):
        super().__init__(1, 1, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(self, image: torch.Tensor, target=None):
        return image, target


def torchvision_detector(model: FasterRCNN, cfg) -> TorchvisionFasterRCNN:
    """torchvision's FasterRCNN composed as ``model`` (built from the ``model`` config ``cfg``,
    C4 or FPN).

    The reference gets deep copies of ``model``'s modules (so the weights are equal and shared
    with nothing), with the same frozen stages and normalisation layers: the backbone, the RPN
    head, the box head (C4: layer4 + average pooling; FPN: the two fully connected layers) and
    the predictor's weights; everything else is torchvision's. Feed it the unpadded images of
    a batch: ``reference([images[i, :, :h_i, :w_i] ...], targets)``.
    """
    anchors, rpn, roi = cfg.anchors, cfg.rpn, cfg.roi_head
    num_classes = model.roi_head.score.out_features  # background included
    levels = len(model.rpn.anchor_generators)
    if levels == 1:  # C4: one feature map
        backbone = copy.deepcopy(model.backbone)
    else:
        backbone = PyramidAsDict(copy.deepcopy(model.backbone))
    growth = 2 if anchors.level_sizes == LevelSizes.doubling else 1
    sizes = tuple(tuple(anchors.base_size * growth**level * s for s in anchors.scales) for level in range(levels))
    pooled = len(model.backbone.pooled_strides) if levels > 1 else 1
    predictor = FastRCNNPredictor(model.roi_head.score.in_features, num_classes)
    predictor.cls_score.load_state_dict(model.roi_head.score.state_dict())
    predictor.bbox_pred.load_state_dict(model.roi_head.cls_loc.state_dict())
    reference = TorchvisionFasterRCNN(
        backbone,
        rpn_anchor_generator=AnchorGenerator(sizes=sizes, aspect_ratios=(tuple(anchors.ratios),) * levels),
        rpn_head=RPNHeadLists(copy.deepcopy(model.rpn.head)),
        rpn_pre_nms_top_n_train=rpn.pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn.pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn.post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn.post_nms_top_n_test,
        rpn_nms_thresh=rpn.nms_thresh,
        rpn_score_thresh=rpn.score_thresh,
        rpn_fg_iou_thresh=rpn.pos_iou_thresh,
        rpn_bg_iou_thresh=rpn.neg_iou_thresh,
        rpn_batch_size_per_image=rpn.batch_size_per_image,
        rpn_positive_fraction=rpn.positive_fraction,
        box_roi_pool=MultiScaleRoIAlign([str(level) for level in range(pooled)], roi.roi_size, roi.sampling_ratio),
        box_head=copy.deepcopy(model.roi_head.box_head),
        box_predictor=predictor,
        box_score_thresh=roi.score_thresh,
        box_nms_thresh=roi.nms_thresh,
        box_detections_per_img=roi.detections_per_image,
        box_fg_iou_thresh=roi.fg_iou_thresh,
        box_bg_iou_thresh=roi.bg_iou_thresh_hi,
        box_batch_size_per_image=roi.batch_size_per_image,
        box_positive_fraction=roi.positive_fraction,
        bbox_reg_weights=tuple(1.0 / s for s in roi.bbox_std),
    )
    # FasterRCNN's constructor accepts MultiScaleRoIAlign only: other C4 poolers are swapped in after.
    if levels == 1 and (roi.pooler != "roi_align" or roi.aligned):
        reference.roi_heads.box_roi_pool = SingleLevelPooler(
            roi.pooler, roi.roi_size, 1.0 / anchors.stride, roi.sampling_ratio, roi.aligned
        )
    reference.transform = NoResizeTransform()
    reference.rpn.box_coder = det_utils.BoxCoder(tuple(1.0 / s for s in rpn.bbox_std))
    reference.rpn.min_size = rpn.min_size
    return reference.to(next(model.parameters()).device)


# frcnn's loss names -> torchvision's.
LOSS_NAMES = {
    "rpn_cls": "loss_objectness",
    "rpn_loc": "loss_rpn_box_reg",
    "roi_cls": "loss_classifier",
    "roi_loc": "loss_box_reg",
}


class ReferenceDetector(nn.Module):
    """The reference behind frcnn's ``FasterRCNN`` call contract, so that the same training
    loop, loader and evaluator drive both: ``forward(images [B, 3, H, W] padded, image_sizes,
    targets)`` returns frcnn's loss names in training and per-image detections in eval."""

    def __init__(self, reference: TorchvisionFasterRCNN):
        super().__init__()
        self.reference = reference

    def forward(self, images: torch.Tensor, image_sizes, targets: list[dict] | None = None):
        unpadded = [image[:, : int(h), : int(w)] for image, (h, w) in zip(images, image_sizes)]
        if not self.training:
            return self.reference(unpadded)
        if targets is None:
            raise ValueError("ReferenceDetector in train mode needs targets")
        losses = self.reference(unpadded, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        return {ours: losses[theirs] for ours, theirs in LOSS_NAMES.items()}


def build_reference_model(cfg, num_classes: int) -> ReferenceDetector:
    """The reference for the ``model`` config ``cfg``, initialised exactly as
    ``build_model(cfg, num_classes)`` would be from the same RNG state."""
    return ReferenceDetector(torchvision_detector(build_model(cfg, num_classes), cfg))
