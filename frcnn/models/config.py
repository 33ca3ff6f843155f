"""Schema of the ``model`` config node (``configs/model/*.yaml``).

Defaults follow the seed "R50-C4" design (DESIGN.md §2). Every size is configurable so that
the same code trains a tiny ResNet-18 detector on the CPU and a ResNet-101 one on a GPU. Each
key is declared once, here: type, default, doc and allowed values (:mod:`frcnn.utils.settings`).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Optional

from frcnn.utils.settings import BELOW_ONE, FRACTION, NONNEGATIVE, POSITIVE, Range, one_of, setting

RESNET_DEPTHS = (18, 34, 50, 101)


class Architecture(StrEnum):
    c4 = "c4"  # trunk to layer3, layer4 per RoI (the seed design)
    fpn = "fpn"  # a feature pyramid (torchvision's fasterrcnn_*_fpn)


class BackboneName(StrEnum):
    resnet = "resnet"
    mobilenet_v3_large = "mobilenet_v3_large"  # fpn only


class Norm(StrEnum):
    """The backbone's norm layers."""

    auto = "auto"  # FrozenBatchNorm2d with pre-trained weights, trainable BatchNorm2d from scratch
    frozen_bn = "frozen_bn"
    bn = "bn"
    gn = "gn"  # resnet only, from scratch


class LevelSizes(StrEnum):
    """fpn only: anchor sizes per pyramid level."""

    doubling = "doubling"  # level l's are 2^l times base_size * scales (the ResNet-FPN's)
    same = "same"  # every level's are base_size * scales (the MobileNet-FPN's)


class Pooler(StrEnum):
    roi_pool = "roi_pool"  # the seed's
    roi_align = "roi_align"


class BoxHead(StrEnum):
    mlp = "mlp"  # two fully connected layers of mlp_dim (fasterrcnn_resnet50_fpn)
    conv_fc = "conv_fc"  # 3x3 convs of conv_dims, then one fully connected layer (fasterrcnn_resnet50_fpn_v2)


class LayerNorm(StrEnum):
    """A norm after the pyramid's or the box head's convs."""

    none = "none"  # convs with bias
    bn = "bn"  # BatchNorm2d, batch statistics in training


@dataclass
class BackboneConfig:
    name: BackboneName = setting(
        BackboneName.resnet,
        "resnet | mobilenet_v3_large (fpn only: MobileNetV3-Large, its last two stages under the pyramid)",
    )
    depth: int = setting(50, "resnet only: 18 | 34 | 50 | 101 (torchvision ResNet)", one_of(*RESNET_DEPTHS))
    weights: Optional[str] = setting(
        "imagenet", '"imagenet" (torchvision weights API, cached download), a local state-dict path, or null'
    )
    norm: Norm = setting(
        Norm.auto, "auto: FrozenBatchNorm2d with weights, BatchNorm2d from scratch; or frozen_bn | bn | gn (resnet)"
    )
    # ResNet: 0 none, 1 conv1, 2 conv1+layer1, ... 4 up to layer3 (5: + layer4, FPN only); null: 2 with
    # pre-trained weights, 0 from scratch. mobilenet_v3_large: 0..6 of its 6 stages (6 - torchvision's
    # trainable_backbone_layers); null: 3 with pre-trained weights. Which counts exist for the
    # backbone is checked when it is built.
    frozen_stages: Optional[int] = setting(
        None,
        "leading stages whose parameters are frozen (null: by the weights)",
        Range(lambda v: 0 <= v <= 6, "in 0..6", optional=True),
    )
    channels_last: bool = setting(False, "run the convolutions in channels_last memory format")


@dataclass
class AnchorConfig:
    base_size: int = setting(16, "anchor base size in input pixels (P2's for fpn)", POSITIVE)
    scales: list[float] = setting([8.0, 16.0, 32.0], "anchor sizes as multiples of base_size", POSITIVE.for_each())
    ratios: list[float] = setting([0.5, 1.0, 2.0], "anchor aspect ratios, height / width", POSITIVE.for_each())
    stride: int = setting(16, "must equal the trunk's stride (16 for C4) or the first pyramid level's (fpn)", POSITIVE)
    level_sizes: LevelSizes = setting(LevelSizes.doubling, "fpn only: doubling (ResNet-FPN) | same (MobileNet-FPN)")
    # 0 (torchvision, detectron2; trains better, docs/parity.md) or 0.5 (the seed's base_size / 2).
    offset: float = setting(0.0, "cell (i, j)'s anchors are centred on stride * (j + offset, i + offset)", BELOW_ONE)
    round: bool = setting(False, "round the cell anchors to whole pixels (torchvision)")
    # torchvision's AnchorGenerator: a stride-64 level over an odd number of stride-32 cells has a
    # shorter stride (59 along a 416 px side: 7 cells); false keeps each level's own stride.
    stride_from_size: bool = setting(
        False, "fpn: a level's anchor stride is the padded input side // its feature side (torchvision)"
    )


@dataclass
class RPNConfig:
    ORDERED: ClassVar = (("neg_iou_thresh", "pos_iou_thresh"),)

    conv_channels: int = setting(512, "channels of the RPN head's 3x3 convs", POSITIVE)
    conv_depth: int = setting(
        1, "3x3 conv + ReLU layers before the predictors: 1 (seed, fasterrcnn_resnet50_fpn) or 2 (its v2)", POSITIVE
    )
    nms_thresh: float = setting(0.7, "IoU threshold of the proposals' NMS", FRACTION)
    pre_nms_top_n_train: int = setting(12000, "proposals kept before NMS in training (per level for fpn)", POSITIVE)
    post_nms_top_n_train: int = setting(2000, "proposals kept after NMS in training", POSITIVE)
    pre_nms_top_n_test: int = setting(6000, "proposals kept before NMS at test time (per level for fpn)", POSITIVE)
    post_nms_top_n_test: int = setting(300, "proposals kept after NMS at test time", POSITIVE)
    min_size: float = setting(16.0, "proposals narrower or shorter than this (input pixels) are dropped", NONNEGATIVE)
    # torchvision's rpn_score_thresh: 0.05 for the MobileNet-FPN detectors.
    score_thresh: float = setting(
        0.0, "proposals whose objectness probability is below this are dropped (0: keep all)", FRACTION
    )
    batch_size_per_image: int = setting(256, "sampled anchors per image", POSITIVE)
    positive_fraction: float = setting(0.5, "largest share of positives among the sampled anchors", FRACTION)
    pos_iou_thresh: float = setting(0.7, "an anchor with IoU >= this with a box is positive", FRACTION)
    neg_iou_thresh: float = setting(0.3, "an anchor with IoU < this with every box is negative", FRACTION)
    bbox_std: list[float] = setting(
        [1.0, 1.0, 1.0, 1.0], "box-delta normalisation (dx, dy, dw, dh)", POSITIVE.for_each(4)
    )
    loc_sigma: float = setting(3.0, "smooth-L1 transition at 1 / sigma^2", POSITIVE)
    # -1 (torchvision, detectron2; trains better, docs/parity.md), 0 is the seed's rule.
    boundary_thresh: float = setting(
        -1.0,
        "anchors reaching more than this many pixels past the border are left out of training (-1: none)",
        Range(lambda v: v >= 0 or v == -1, ">= 0 (or -1: keep every anchor)"),
    )
    min_size_after_top_n: bool = setting(
        False, "true: top-k by objectness, then drop boxes under min_size (torchvision); false: the reverse (seed)"
    )


@dataclass
class RoIHeadConfig:
    ORDERED: ClassVar = (("bg_iou_thresh_lo", "bg_iou_thresh_hi"),)

    pooler: Pooler = setting(Pooler.roi_pool, "roi_pool (seed) | roi_align")
    roi_size: int = setting(14, "pooled RoI side", POSITIVE)
    sampling_ratio: int = setting(2, "roi_align only: samples per bin side (0: adaptive, torchvision)", NONNEGATIVE)
    aligned: bool = setting(False, "roi_align only: half-pixel offset")
    batch_size_per_image: int = setting(128, "sampled RoIs per image", POSITIVE)
    positive_fraction: float = setting(0.25, "largest share of foreground among the sampled RoIs", FRACTION)
    fg_iou_thresh: float = setting(0.5, "a RoI with IoU >= this with a box is foreground", FRACTION)
    bg_iou_thresh_hi: float = setting(0.5, "a RoI with IoU in [lo, hi) is background", FRACTION)
    bg_iou_thresh_lo: float = setting(0.0, "see bg_iou_thresh_hi", FRACTION)
    bbox_std: list[float] = setting(
        [0.1, 0.1, 0.2, 0.2], "box-delta normalisation (dx, dy, dw, dh)", POSITIVE.for_each(4)
    )
    loc_sigma: float = setting(1.0, "smooth-L1 transition at 1 / sigma^2", POSITIVE)
    score_thresh: float = setting(0.05, "detections scoring below this are dropped", FRACTION)
    nms_thresh: float = setting(0.5, "IoU threshold of the per-class NMS of detections", FRACTION)
    detections_per_image: int = setting(100, "detections kept per image", POSITIVE)
    box_head: BoxHead = setting(BoxHead.mlp, "fpn only: mlp | conv_fc (3x3 convs + conv_norm + ReLU, then one fc)")
    mlp_dim: int = setting(1024, "fpn only: width of the box head's fully connected layers", POSITIVE)
    conv_dims: list[int] = setting([256, 256, 256, 256], "conv_fc only: channels of each 3x3 conv", POSITIVE.for_each())
    conv_norm: LayerNorm = setting(LayerNorm.bn, "conv_fc only: bn (BatchNorm2d) | none")


@dataclass
class ModelConfig:
    # fpn: ResNet-FPN (fasterrcnn_resnet50_fpn; anchors.base_size/stride are P2's, doubled per level
    # up to P6) or MobileNet-FPN (backbone.name=mobilenet_v3_large; levels of stride 32, 32, 64).
    architecture: Architecture = setting(Architecture.c4, "c4 (trunk to layer3, layer4 per RoI) | fpn")
    fpn_channels: int = setting(256, "fpn only: channels of every pyramid level", POSITIVE)
    fpn_norm: LayerNorm = setting(LayerNorm.none, "fpn only: norm after the pyramid's convs: none | bn (its v2)")
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_head: RoIHeadConfig = field(default_factory=RoIHeadConfig)
    weights: Optional[str] = setting(
        None, "full-detector weights for fine-tuning (a checkpoint, state dict or torchvision:<name>)"
    )
