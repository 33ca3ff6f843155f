"""Schema of the ``model`` config node (``configs/model/*.yaml``).

Defaults follow the seed "R50-C4" design (DESIGN.md §2). Every size is configurable so that
the same code trains a tiny ResNet-18 detector on the CPU and a ResNet-101 one on a GPU.
"""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class BackboneConfig:
    # resnet | mobilenet_v3_large (fpn only: torchvision's MobileNetV3-Large, its last two stages
    # under the pyramid, as fasterrcnn_mobilenet_v3_large_fpn's).
    name: str = "resnet"
    depth: int = 50  # resnet only: 18 | 34 | 50 | 101 (torchvision ResNet)
    # "imagenet" (torchvision weights API, cached download), a local state-dict path, or null.
    weights: Optional[str] = "imagenet"
    # auto: FrozenBatchNorm2d with weights, trainable BatchNorm2d from scratch; or frozen_bn | bn | gn
    # (gn: resnet only).
    norm: str = "auto"
    # Leading stages whose parameters are frozen: 0 none, 1 conv1, 2 conv1+layer1, ... 4 up to layer3
    # (5: + layer4, FPN only). null: 2 with pre-trained weights, 0 from scratch (weights=null).
    # mobilenet_v3_large: 0..6 of its 6 stages (6 - torchvision's trainable_backbone_layers); null: 3
    # with pre-trained weights.
    frozen_stages: Optional[int] = None
    # Run the convolutions in channels_last memory format (faster oneDNN / cuDNN kernels).
    channels_last: bool = False


@dataclass
class AnchorConfig:
    base_size: int = 16
    scales: list[float] = field(default_factory=lambda: [8.0, 16.0, 32.0])
    ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # height / width
    stride: int = 16  # must equal the trunk's stride (16 for C4) or the first pyramid level's (fpn)
    # fpn only: anchor sizes per pyramid level. doubling: level l's are 2^l times base_size * scales
    # (the ResNet-FPN's); same: every level's are base_size * scales (the MobileNet-FPN's).
    level_sizes: str = "doubling"
    # Cell (i, j)'s anchors are centred on stride * (j + offset, i + offset): 0 (torchvision,
    # detectron2; trains better, docs/parity.md) or 0.5 (the seed's base_size / 2).
    offset: float = 0.0
    round: bool = False  # round the cell anchors to whole pixels (torchvision)


@dataclass
class RPNConfig:
    conv_channels: int = 512
    # 3x3 conv + ReLU layers before the 1x1 predictors: 1 (the seed, fasterrcnn_resnet50_fpn) or
    # 2 (fasterrcnn_resnet50_fpn_v2; the first maps to conv_channels, the next keep them).
    conv_depth: int = 1
    nms_thresh: float = 0.7
    pre_nms_top_n_train: int = 12000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 6000
    post_nms_top_n_test: int = 300
    min_size: float = 16.0  # proposals narrower or shorter than this (input-image pixels) are dropped
    # Proposals whose objectness probability is below this are dropped after the per-level top-n
    # (torchvision's rpn_score_thresh: 0.05 for the MobileNet-FPN detectors); 0 keeps them all.
    score_thresh: float = 0.0
    batch_size_per_image: int = 256  # sampled anchors per image
    positive_fraction: float = 0.5
    pos_iou_thresh: float = 0.7
    neg_iou_thresh: float = 0.3
    bbox_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    loc_sigma: float = 3.0  # smooth-L1 transition at 1 / sigma^2
    # Anchors reaching more than this many pixels past the image border are left out of
    # training; -1 keeps every anchor (torchvision, detectron2; trains better,
    # docs/parity.md), 0 is the seed's rule.
    boundary_thresh: float = -1.0
    # true: top-k by objectness, then drop boxes under min_size (torchvision); false: the reverse (seed).
    min_size_after_top_n: bool = False


@dataclass
class RoIHeadConfig:
    pooler: str = "roi_pool"  # roi_pool (seed) | roi_align
    roi_size: int = 14
    sampling_ratio: int = 2  # roi_align only
    aligned: bool = False  # roi_align only: half-pixel offset
    batch_size_per_image: int = 128  # sampled RoIs per image
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh_hi: float = 0.5
    bg_iou_thresh_lo: float = 0.0
    bbox_std: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    loc_sigma: float = 1.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    # fpn only: the box head. mlp: two fully connected layers of mlp_dim (fasterrcnn_resnet50_fpn);
    # conv_fc: 3x3 convs of conv_dims channels, each followed by conv_norm and ReLU, then one fully
    # connected layer of mlp_dim (fasterrcnn_resnet50_fpn_v2).
    box_head: str = "mlp"
    mlp_dim: int = 1024  # fpn only: width of the box head's fully connected layers
    conv_dims: list[int] = field(default_factory=lambda: [256, 256, 256, 256])  # conv_fc only
    conv_norm: str = "bn"  # conv_fc only: bn (BatchNorm2d, batch statistics in training) | none


@dataclass
class ModelConfig:
    # c4: trunk to layer3, layer4 per RoI (the seed design); fpn: ResNet-FPN (torchvision's
    # fasterrcnn_resnet50_fpn; anchors.base_size/stride are P2's, doubled per level up to P6) or
    # MobileNet-FPN (backbone.name=mobilenet_v3_large; levels of stride 32, 32, 64).
    architecture: str = "c4"
    fpn_channels: int = 256  # fpn only: channels of every pyramid level
    # fpn only: norm after the pyramid's lateral and output convs: none (convs with bias,
    # fasterrcnn_resnet50_fpn) | bn (BatchNorm2d, fasterrcnn_resnet50_fpn_v2).
    fpn_norm: str = "none"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_head: RoIHeadConfig = field(default_factory=RoIHeadConfig)
    # Full-detector weights for fine-tuning (a checkpoint or state dict); loaded by the engine.
    weights: Optional[str] = None
