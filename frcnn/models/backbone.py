"""ResNet "C4" backbone: conv1..layer3 as the shared trunk (stride 16), layer4 as the RoI head.

The trunk maps images ``[B, 3, H, W]`` to features ``[B, C4, H/16, W/16]`` (C4 = 1024 for
ResNet-50/101, 256 for ResNet-18/34); layer4 maps pooled RoIs ``[R, C4, S, S]`` to
``[R, C5, S/2, S/2]`` (C5 = 2048, or 512 for the BasicBlock ResNets).
"""

import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.models.config import Norm

logger = logging.getLogger(__name__)

DEFAULT_FROZEN_STAGES = 2  # with pre-trained weights: conv1 + layer1
# Stage index -> trunk children it freezes (frozen_stages = n freezes stages 1..n).
_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",))


class FrozenStages:
    """Mixin: ``self.frozen`` modules get ``requires_grad=False`` (:meth:`freeze`) and keep their
    norm layers in eval mode (running statistics not updated) even in train mode."""

    frozen: list[nn.Module]

    def freeze(self, modules: list[nn.Module]) -> None:
        self.frozen = modules
        for module in modules:
            module.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self


class ResNetTrunk(FrozenStages, nn.Sequential):
    """conv1 .. layer3 of a ResNet, with its first ``frozen_stages`` stages frozen.

    Frozen stages have ``requires_grad=False`` and their norm layers stay in eval mode
    (running statistics are not updated) even when the model is put in train mode.
    """

    def __init__(self, resnet: torchvision.models.ResNet, frozen_stages: int):
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
        super().__init__(OrderedDict((name, getattr(resnet, name)) for name in names))
        if not 0 <= frozen_stages <= len(_STAGES):
            raise ValueError(f"backbone.frozen_stages must be in 0..{len(_STAGES)}, got {frozen_stages}")
        self.freeze([getattr(self, name) for stage in _STAGES[:frozen_stages] for name in stage])
        self.out_channels = block_out_channels(resnet.layer3)
        self.train()


def block_out_channels(layer: nn.Sequential) -> int:
    """Channels a ResNet stage (BasicBlock or Bottleneck) outputs."""
    block = layer[-1]
    last_conv = block.conv3 if hasattr(block, "conv3") else block.conv2
    return last_conv.out_channels


def norm_layer(norm: Norm):
    if norm == Norm.frozen_bn:
        return FrozenBatchNorm2d
    if norm == Norm.bn:
        return nn.BatchNorm2d
    return lambda channels: nn.GroupNorm(32, channels)


def load_local_state_dict(net: nn.Module, path: str, network: str) -> None:
    """Load the state dict file ``path`` into ``net`` (named ``network`` in the errors), every key."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling/zip error: report the file, keep the cause
        raise ValueError(f"backbone weights file {path!r} cannot be read as a state dict: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights file {path!r} holds a {type(state).__name__}, not a state dict")
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches are raised even when strict=False
        raise ValueError(f"backbone weights file {path!r} does not fit {network}: {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"backbone weights file {path!r} does not fit {network}: "
            f"missing keys {result.missing_keys[:8]}{' ...' if len(result.missing_keys) > 8 else ''}, "
            f"unexpected keys {result.unexpected_keys[:8]}{' ...' if len(result.unexpected_keys) > 8 else ''}"
        )


class WeightsUnavailableError(FileNotFoundError):
    """Weights that are neither in the torch cache nor downloadable (offline)."""


def imagenet_state_dict(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """The state dict of torchvision ``weights``: from the torch cache, downloaded there on first use.

    The cached file is read with ``weights_only=True``: a file planted in a shared cache cannot
    run code. Offline, :class:`WeightsUnavailableError` says where to put the file by hand.
    """
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except OSError as error:  # URLError is an OSError: offline, DNS, refused
        name = Path(weights.url).name
        cache = Path(torch.hub.get_dir()) / "checkpoints" / name
        raise WeightsUnavailableError(
            f"cannot download the ImageNet weights {weights.url} ({getattr(error, 'reason', error)}): download "
            f"that file elsewhere and place it at {cache}, or pass model.backbone.weights=/path/to/{name}"
        ) from None


def build_resnet(depth: int, weights: str | None, norm: Norm = Norm.auto) -> torchvision.models.ResNet:
    """A torchvision ResNet of ``depth`` with ``weights`` loaded: "imagenet", a local path or None.

    ``norm="auto"`` picks FrozenBatchNorm2d when weights are loaded and trainable BatchNorm2d
    from scratch. GroupNorm cannot take BatchNorm statistics, so it requires ``weights=None``.
    """
    if norm == Norm.auto:
        norm = Norm.bn if weights is None else Norm.frozen_bn
    if norm == Norm.gn and weights is not None:
        raise ValueError("backbone.norm=gn cannot load BatchNorm weights; use weights=null or another norm")
    constructor = getattr(torchvision.models, f"resnet{depth}")
    # From scratch, a zero-initialised last norm in each residual branch makes every block
    # start as the identity, which trains markedly better without pre-training.
    net = constructor(weights=None, norm_layer=norm_layer(norm), zero_init_residual=weights is None)
    if weights == "imagenet":
        enum = torchvision.models.get_model_weights(f"resnet{depth}").DEFAULT
        logger.info("loading backbone weights %s", enum)
        net.load_state_dict(imagenet_state_dict(enum))
    elif weights is not None:
        load_local_state_dict(net, os.path.expanduser(weights), f"resnet{depth}")
    return net


def frozen_stage_count(cfg, default: int = DEFAULT_FROZEN_STAGES) -> int:
    """How many leading stages ``cfg`` (a ``BackboneConfig``) freezes.

    ``frozen_stages=None`` picks ``default`` with pre-trained weights (ResNet: 2, conv1 + layer1,
    as torchvision and detectron2 fine-tune) and 0 from scratch, where frozen stages would stay random.
    """
    if cfg.frozen_stages is not None:
        return cfg.frozen_stages  # frozen random layers are warned of by build_model, which knows model.weights
    if cfg.weights is not None:
        return default
    logger.info(
        "backbone.weights=null: every stage trains from scratch (frozen_stages=0); a detector trained "
        "from scratch needs many times the iterations of one fine-tuned from pre-trained weights"
    )
    return 0


def build_backbone(cfg) -> tuple[ResNetTrunk, nn.Sequential]:
    """(trunk conv1..layer3, layer4) of the ResNet described by ``cfg`` (a ``BackboneConfig``)."""
    net = build_resnet(cfg.depth, cfg.weights, cfg.norm)
    return ResNetTrunk(net, frozen_stage_count(cfg)), net.layer4
