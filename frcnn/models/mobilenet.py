"""The MobileNet-FPN backbone: torchvision's MobileNetV3-Large with a feature pyramid over its last
two stages, as ``fasterrcnn_mobilenet_v3_large_fpn`` and ``fasterrcnn_mobilenet_v3_large_320_fpn``
build it (``backbone_utils._mobilenet_extractor``).

It maps images ``[B, 3, H, W]`` to three maps of ``channels`` each: the pyramid over block 13's
output (160 channels) and over the last 1x1 conv's (960), both at stride 32, and a stride-2
max-pool of the second (stride 64, used by the RPN only). Module and parameter names are
torchvision's (``body.<block>``, ``fpn``), so its detectors' state dicts map onto this backbone.
"""

import logging
import os

import torch
import torchvision
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from frcnn.models.backbone import FrozenStages, imagenet_state_dict, load_local_state_dict, norm_layer
from frcnn.models.config import Norm

logger = logging.getLogger(__name__)

MOBILENET_STRIDES = (32, 32, 64)
# torchvision's MultiScaleRoIAlign infers the scale 1/32 for both stride-32 maps, so its level
# mapper (levels 5..5) sends every RoI to the first one: RoIs are pooled from that map alone.
MOBILENET_POOLED_STRIDES = (32,)
DEFAULT_MOBILENET_FROZEN_STAGES = 3  # torchvision's trainable_backbone_layers=3 of 6 stages


class MobileNetFPN(FrozenStages, BackboneWithFPN):
    """MobileNetV3 ``features`` (``body``) + ``FeaturePyramidNetwork`` with ``LastLevelMaxPool``
    (``fpn``) over its last two stages; ``forward`` returns the list of three maps.

    The stages are split where a block downsamples (torchvision's ``_is_cn`` blocks), the first
    conv being stage 1 and the last conv the last stage (6 for MobileNetV3-Large): the first
    ``frozen_stages`` have ``requires_grad=False`` and keep their norm layers in eval mode in
    training, as torchvision's ``trainable_backbone_layers = 6 - frozen_stages`` does.
    ``norm_layer``: the norm after each of the pyramid's convs (None: convs with bias, no norm).
    """

    strides = MOBILENET_STRIDES
    pooled_strides = MOBILENET_POOLED_STRIDES

    def __init__(self, mobilenet: torchvision.models.MobileNetV3, frozen_stages: int, channels: int, norm_layer=None):
        features = mobilenet.features
        # Blocks that start a stage: the first conv, each downsampling block, the last conv.
        starts = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
        if not 0 <= frozen_stages <= len(starts):
            raise ValueError(f"backbone.frozen_stages must be in 0..{len(starts)}, got {frozen_stages}")
        returned = starts[-2:]
        super().__init__(
            features,
            return_layers={str(block): str(level) for level, block in enumerate(returned)},
            in_channels_list=[features[block].out_channels for block in returned],
            out_channels=channels,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=norm_layer,
        )
        frozen_blocks = len(features) if frozen_stages == len(starts) else starts[frozen_stages]
        self.freeze([self.body[str(block)] for block in range(frozen_blocks)])
        self.train()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(super().forward(images).values())


def build_mobilenet_v3_large(weights: str | None, norm: Norm = Norm.auto) -> torchvision.models.MobileNetV3:
    """A torchvision MobileNetV3-Large with ``weights`` loaded: "imagenet" (IMAGENET1K_V1, the
    weights torchvision's detectors start from), a local path or None.

    ``norm="auto"`` picks FrozenBatchNorm2d when weights are loaded and trainable BatchNorm2d
    from scratch, as torchvision's detectors do (both with the default eps, 1e-5, not the
    classifier's 1e-3).
    """
    if norm == Norm.gn:  # GroupNorm is the ResNet's only
        allowed = [str(n) for n in Norm if n != Norm.gn]
        raise ValueError(f"backbone.norm must be one of {allowed} for mobilenet_v3_large, got {norm!r}")
    if norm == Norm.auto:
        norm = Norm.bn if weights is None else Norm.frozen_bn
    net = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=norm_layer(norm))
    if weights == "imagenet":
        enum = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
        logger.info("loading backbone weights %s", enum)
        net.load_state_dict(imagenet_state_dict(enum))
    elif weights is not None:
        load_local_state_dict(net, os.path.expanduser(weights), "mobilenet_v3_large")
    return net
