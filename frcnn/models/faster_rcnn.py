"""Faster R-CNN: backbone -> RPN -> RoI head, in the ResNet "C4" design (trunk to layer3,
layer4 per RoI) or the FPN design (a ResNet or MobileNet feature pyramid, multi-level RoIAlign,
MLP head).

Inference runs the RPN's proposal layer (:mod:`frcnn.models.proposals`) and the RoI head's
detection stage (:mod:`frcnn.models.postprocess`), both in fixed-shape form: :meth:`FasterRCNN.detect`
gives the padded detections that the ONNX export traces, ``forward`` in eval mode the same
detections per image."""

import logging

import torch
from torch import nn

from frcnn.models.backbone import block_out_channels, build_backbone
from frcnn.models.config import Architecture, BackboneName, ModelConfig
from frcnn.models.fpn import FPN_STRIDES, build_fpn_backbone, build_fpn_box_head, fpn_backbone_class
from frcnn.models.matching import GroundTruth, pad_targets
from frcnn.models.poolers import MultiLevelRoIAlign
from frcnn.models.postprocess import Detections
from frcnn.models.roi_head import ROI_LOSSES, RoIHead, build_c4_box_parts, build_roi_head
from frcnn.models.rpn import RPN_LOSSES, RegionProposalNetwork, build_rpn
from frcnn.utils.compile import is_compiled
from frcnn.utils.settings import typed

logger = logging.getLogger(__name__)

LOSS_TERMS = (*RPN_LOSSES, *ROI_LOSSES)  # what forward returns in train mode


class FasterRCNN(nn.Module):
    """Two-stage detector.

    ``forward(images, image_sizes, targets)`` in train mode returns the losses
    ``{"rpn_cls", "rpn_loc", "roi_cls", "roi_loc"}`` (scalar tensors); in eval mode
    ``forward(images, image_sizes)`` returns per image ``{"boxes" [D, 4], "scores" [D],
    "labels" [D]}`` with labels in 1..K and scores decreasing. In eval mode with ``targets``
    it returns ``(detections, losses)`` from one forward: the losses of the training target
    assignment and sampling on the test-time proposals (normalisation layers in eval mode; the
    sampling draws from the global RNG, so seed it, or fork it, for a reproducible value).

    ``images [B, 3, H, W]`` are normalised and zero-padded; ``image_sizes`` (list of ``(h, w)``
    or ``Tensor[B, 2]``) are the unpadded sizes; ``targets`` is a list of dicts with ``boxes
    [N, 4]`` (x1, y1, x2, y2) and ``labels [N]`` in 1..K, in input-image pixels (N may be 0),
    or that list already padded by :func:`frcnn.models.matching.pad_targets` (what
    :func:`model_inputs` hands a compiled model).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        rpn: RegionProposalNetwork,
        roi_head: RoIHead,
        channels_last: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_head = roi_head
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor, image_sizes, targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("FasterRCNN in train mode needs targets; call model.eval() for detections")
        image_sizes = torch.as_tensor(image_sizes, dtype=torch.int64).to(images.device, non_blocking=True)
        features = self.features(images)
        gt = targets if targets is None or isinstance(targets, GroundTruth) else pad_targets(targets, images.device)
        proposals, rpn_losses = self.rpn(features, image_sizes, gt)
        output = self.roi_head(features, proposals, image_sizes, gt)
        if self.training:
            return {**rpn_losses, **output}
        if gt is not None:  # eval with targets: detections and the validation losses
            detections, roi_losses = output
            return detections, {**rpn_losses, **roi_losses}
        return output

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's feature maps ``[B, C, H_l, W_l]``, one per level (C4: one)."""
        features = self.backbone(images.contiguous(memory_format=self.memory_format))
        return [features] if isinstance(features, torch.Tensor) else features

    def detect(self, images: torch.Tensor, image_sizes: torch.Tensor) -> Detections:
        """Eval-mode detections, padded to a fixed count per image (what the ONNX export traces):
        ``images [B, 3, H, W]``, ``image_sizes [B, 2]`` int64 on the images' device."""
        features = self.features(images)
        proposals, _ = self.rpn(features, image_sizes)
        return self.roi_head.detect(features, proposals, image_sizes)


def build_model(cfg, num_classes: int) -> FasterRCNN:
    """Faster R-CNN from the ``model`` config node (DictConfig or ``ModelConfig``) for
    ``num_classes`` object classes (background is added inside). ``cfg`` is checked (and typed,
    when it is plain values) by :func:`frcnn.utils.settings.typed`: a bad value names its key."""
    cfg = typed(cfg, ModelConfig, "model.")
    _warn_frozen_random_layers(cfg)
    if cfg.architecture == Architecture.c4:
        if cfg.backbone.name != BackboneName.resnet:
            raise ValueError(f"model.backbone.name must be resnet for c4, got {cfg.backbone.name!r}")
        backbone, layer4 = build_backbone(cfg.backbone)
        box_pooler, box_head = build_c4_box_parts(cfg.roi_head, layer4, block_out_channels(layer4), cfg.anchors.stride)
        rpn = build_rpn(cfg.rpn, cfg.anchors, backbone.out_channels)
        sampled_rows_only = False
    else:  # fpn
        strides = fpn_backbone_class(cfg.backbone).strides
        if cfg.anchors.stride != strides[0]:
            level = "P2's stride" if strides == FPN_STRIDES else "the first pyramid level's stride"
            raise ValueError(f"model.anchors.stride must be {strides[0]} ({level}) for fpn, got {cfg.anchors.stride}")
        backbone = build_fpn_backbone(cfg.backbone, cfg.fpn_channels, cfg.fpn_norm)
        box_pooler = MultiLevelRoIAlign(
            cfg.roi_head.roi_size, cfg.roi_head.sampling_ratio, strides=backbone.pooled_strides
        )
        box_head = build_fpn_box_head(cfg.roi_head, cfg.fpn_channels)
        rpn = build_rpn(cfg.rpn, cfg.anchors, cfg.fpn_channels, strides=backbone.strides)
        # BatchNorm in the box head normalises a training batch's rows together: only the sampled
        # RoIs may enter it (torchvision's batch), not the padding rows of the fixed-shape batch.
        sampled_rows_only = any(isinstance(m, nn.BatchNorm2d) for m in box_head.modules())
    return FasterRCNN(
        backbone=backbone,
        rpn=rpn,
        roi_head=build_roi_head(cfg.roi_head, box_pooler, box_head, num_classes, sampled_rows_only=sampled_rows_only),
        channels_last=cfg.backbone.channels_last,
    )


def _warn_frozen_random_layers(cfg) -> None:
    """Frozen backbone stages stay as initialised: without ImageNet weights (``backbone.weights``)
    or detector weights loaded over them (``model.weights``, the fine-tuning presets), random."""
    backbone = cfg.backbone
    if backbone.weights is None and (backbone.frozen_stages or 0) > 0 and not cfg.weights:
        logger.warning(
            "model.backbone.frozen_stages=%d freezes randomly initialised layers (backbone.weights=null, "
            "model.weights=null)",
            backbone.frozen_stages,
        )


def model_inputs(
    model: nn.Module, image_sizes, targets: list[dict] | None, device: torch.device
) -> tuple[object, list[dict] | GroundTruth | None]:
    """``(image_sizes, targets)`` as ``model`` takes them: unchanged for an eager model; for one
    compiled by :func:`frcnn.utils.compile.compile_model`, made tensors outside its graph: the
    sizes an int64 ``[B, 2]`` tensor and the targets padded to a bucketed width
    (:func:`pad_targets`), since the ints of a list of sizes and the lengths of a list of
    targets would each be a value the graph is specialised on: one compilation per image size
    and per object count."""
    if not is_compiled(model):
        return image_sizes, targets
    sizes = torch.as_tensor(image_sizes, dtype=torch.int64)
    return sizes, (pad_targets(targets, device, bucket=True) if targets is not None else None)
