"""The ResNet-FPN design: a feature pyramid over ResNet and an MLP box head.

The backbone maps images ``[B, 3, H, W]`` to five maps P2..P6 of ``channels`` each, at strides
4, 8, 16, 32, 64 (P6 is a stride-2 max-pool of P5, used by the RPN only). RoIs are pooled
from P2..P5 by the FPN paper's rule, level ``floor(4 + log2(sqrt(area) / 224))`` clamped to
2..5 (:class:`frcnn.models.poolers.MultiLevelRoIAlign`), and turned into ``[R, mlp_dim]``
vectors by the box head: two fully connected layers (:class:`TwoMLPHead`), or 3x3 convs with
BatchNorm and one fully connected layer (:class:`ConvFCHead`, ``fasterrcnn_resnet50_fpn_v2``'s,
whose pyramid convs are followed by BatchNorm too: ``model.fpn_norm=bn``). Module and parameter
names follow torchvision's ``fasterrcnn_resnet50_fpn`` and ``fasterrcnn_resnet50_fpn_v2``
(``backbone.body``, ``backbone.fpn``, ``box_head.fc6``/``fc7`` or ``box_head.<i>``), so their
state dicts map onto this model. ``backbone.name=mobilenet_v3_large`` swaps in the MobileNet-FPN
backbone (:mod:`frcnn.models.mobilenet`) under the same heads.

A pyramid backbone says where its maps are: ``strides`` (one per map, the RPN's levels) and
``pooled_strides`` (the leading maps RoIs are pooled from).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from frcnn.models.backbone import _STAGES, FrozenStages, block_out_channels, build_resnet, frozen_stage_count
from frcnn.models.config import BackboneName, BoxHead, LayerNorm
from frcnn.models.mobilenet import DEFAULT_MOBILENET_FROZEN_STAGES, MobileNetFPN, build_mobilenet_v3_large

FPN_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
POOLED_LEVELS = 4  # RoIs are pooled from P2..P5


class ResNetFPN(FrozenStages, BackboneWithFPN):
    """ResNet conv1..layer4 (``body``) + ``FeaturePyramidNetwork`` with ``LastLevelMaxPool``
    (``fpn``); ``forward`` returns the list ``[P2, ..., P6]``.

    The first ``frozen_stages`` stages (1: conv1, 2: + layer1, ...) have ``requires_grad=False``
    and keep their norm layers in eval mode in training, as :class:`ResNetTrunk` does.
    ``norm_layer``: the norm after each of the pyramid's convs (None: convs with bias, no norm).
    """

    strides = FPN_STRIDES
    pooled_strides = FPN_STRIDES[:POOLED_LEVELS]

    def __init__(self, resnet, frozen_stages: int, channels: int, norm_layer=None):
        if not 0 <= frozen_stages <= len(_STAGES) + 1:
            raise ValueError(f"backbone.frozen_stages must be in 0..{len(_STAGES) + 1}, got {frozen_stages}")
        layers = [getattr(resnet, f"layer{i}") for i in range(1, 5)]
        super().__init__(
            resnet,
            return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
            in_channels_list=[block_out_channels(layer) for layer in layers],
            out_channels=channels,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=norm_layer,
        )
        stages = (*_STAGES, ("layer4",))
        self.freeze([getattr(self.body, name) for stage in stages[:frozen_stages] for name in stage])
        self.train()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(super().forward(images).values())


class TwoMLPHead(nn.Module):
    """Two fully connected layers with ReLU: ``[R, C, S, S]`` -> ``[R, mlp_dim]``."""

    def __init__(self, in_features: int, mlp_dim: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, mlp_dim)
        self.fc7 = nn.Linear(mlp_dim, mlp_dim)
        self.out_channels = mlp_dim

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(pooled.flatten(1)))))


class ConvFCHead(FastRCNNConvFCHead):
    """torchvision's conv + fc box head: per ``conv_dims`` entry a 3x3 conv (+ ``norm_layer``) +
    ReLU, then flatten and one fully connected layer + ReLU: ``[R, C, S, S]`` -> ``[R, fc_dim]``.

    With BatchNorm the rows of a batch are normalised together in training, so only sampled RoIs
    may enter it (:class:`~frcnn.models.roi_head.RoIHead`'s ``sampled_rows_only``).
    """

    def __init__(self, in_channels: int, roi_size: int, conv_dims: list[int], fc_dim: int, norm_layer=None):
        super().__init__((in_channels, roi_size, roi_size), list(conv_dims), [fc_dim], norm_layer=norm_layer)
        self.out_channels = fc_dim


def fpn_backbone_class(cfg) -> type[ResNetFPN] | type[MobileNetFPN]:
    """The pyramid backbone class of ``cfg`` (a ``BackboneConfig``): its ``strides`` and
    ``pooled_strides`` are known before it is built."""
    return MobileNetFPN if cfg.name == BackboneName.mobilenet_v3_large else ResNetFPN


def build_fpn_backbone(cfg, channels: int, norm: LayerNorm = LayerNorm.none) -> ResNetFPN | MobileNetFPN:
    """The ResNet- or MobileNet-FPN backbone described by ``cfg`` (a ``BackboneConfig``), its
    pyramid convs followed by ``norm`` (``model.fpn_norm``: none | bn)."""
    norm_layer = nn.BatchNorm2d if norm == LayerNorm.bn else None
    if fpn_backbone_class(cfg) is MobileNetFPN:
        frozen_stages = frozen_stage_count(cfg, default=DEFAULT_MOBILENET_FROZEN_STAGES)
        return MobileNetFPN(build_mobilenet_v3_large(cfg.weights, cfg.norm), frozen_stages, channels, norm_layer)
    return ResNetFPN(build_resnet(cfg.depth, cfg.weights, cfg.norm), frozen_stage_count(cfg), channels, norm_layer)


def build_fpn_box_head(cfg, channels: int) -> TwoMLPHead | ConvFCHead:
    """The box head of the ``model.roi_head`` config node over ``channels``-deep pooled RoIs."""
    if cfg.box_head == BoxHead.mlp:
        return TwoMLPHead(channels * cfg.roi_size**2, cfg.mlp_dim)
    norm_layer = nn.BatchNorm2d if cfg.conv_norm == LayerNorm.bn else None
    return ConvFCHead(channels, cfg.roi_size, cfg.conv_dims, cfg.mlp_dim, norm_layer)
