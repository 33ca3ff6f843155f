"""The ResNet-FPN design: a feature pyramid over ResNet and an MLP box head.

The backbone maps images ``[B, 3, H, W]`` to five maps P2..P6 of ``channels`` each, at strides
4, 8, 16, 32, 64 (P6 is a stride-2 max-pool of P5, used by the RPN only). RoIs are pooled
from P2..P5 by the FPN paper's rule, level ``floor(4 + log2(sqrt(area) / 224))`` clamped to
2..5 (:class:`frcnn.models.poolers.MultiLevelRoIAlign`), and turned into ``[R, mlp_dim]``
vectors by two fully connected layers. Module and parameter names follow torchvision's
``fasterrcnn_resnet50_fpn`` (``backbone.body``, ``backbone.fpn``, ``box_head.fc6``/``fc7``), so
its state dict maps onto this model.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from frcnn.models.backbone import _STAGES, FrozenStages, block_out_channels, build_resnet, frozen_stage_count

FPN_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
POOLED_LEVELS = 4  # RoIs are pooled from P2..P5


class ResNetFPN(FrozenStages, BackboneWithFPN):
    """ResNet conv1..layer4 (``body``) + ``FeaturePyramidNetwork`` with ``LastLevelMaxPool``
    (``fpn``); ``forward`` returns the list ``[P2, ..., P6]``.

    The first ``frozen_stages`` stages (1: conv1, 2: + layer1, ...) have ``requires_grad=False``
    and keep their norm layers in eval mode in training, as :class:`ResNetTrunk` does.
    """

    def __init__(self, resnet, frozen_stages: int, channels: int):
        if not 0 <= frozen_stages <= len(_STAGES) + 1:
            raise ValueError(f"backbone.frozen_stages must be in 0..{len(_STAGES) + 1}, got {frozen_stages}")
        layers = [getattr(resnet, f"layer{i}") for i in range(1, 5)]
        super().__init__(
            resnet,
            return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
            in_channels_list=[block_out_channels(layer) for layer in layers],
            out_channels=channels,
            extra_blocks=LastLevelMaxPool(),
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


def build_fpn_backbone(cfg, channels: int) -> ResNetFPN:
    """The ResNet-FPN backbone described by ``cfg`` (a ``BackboneConfig``)."""
    return ResNetFPN(build_resnet(cfg.depth, cfg.weights, cfg.norm), frozen_stage_count(cfg), channels)
