"""RoI pooling: RoIs in torchvision's ``[R, 5]`` format, the one-level pooler of the C4 design and
the FPN's multi-level RoIAlign; the same code runs in eager PyTorch and in the ONNX export.

Shapes: R RoIs in a flat batch, ``rois [R, 4]`` ``(x1, y1, x2, y2)`` in input-image pixels, of
images ``image_index [R]``; C feature channels; S the pooled output size. A pooler's
``forward(features, rois, image_index)`` -> ``[R, C, S, S]``, row i pooled from RoI i.
"""

import math

import torch
from torch import nn
from torchvision.ops import roi_align, roi_pool

from frcnn.models.config import Pooler
from frcnn.models.finite import check_finite_rois


def indexed_rois(rois: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """``rois [R, 4]`` of images ``image_index [R]`` as torchvision.ops takes them: ``[R, 5]``
    float32 ``(image index, x1, y1, x2, y2)``, checked finite first (non-finite RoIs crash
    torchvision's kernels, :mod:`frcnn.models.finite`)."""
    check_finite_rois(rois)
    # Box coordinates stay fp32 under autocast: in bf16 a 1000 px coordinate is off by 4 px.
    return torch.cat([image_index[:, None].float(), rois.float()], dim=1)


class RoIPooler(nn.Module):
    """RoIPool or RoIAlign on one feature map of the given stride (the C4 design); ``features``
    is a list whose first map is pooled."""

    def __init__(self, kind: Pooler, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool):
        super().__init__()
        self.kind, self.output_size, self.spatial_scale = kind, output_size, spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        feature, indexed = features[0], indexed_rois(rois, image_index)
        if self.kind == Pooler.roi_pool:  # no autocast kernel: pool in fp32, hand back the features' dtype
            return roi_pool(feature.float(), indexed, self.output_size, self.spatial_scale).to(feature.dtype)
        # roi_align's autocast kernel runs it in fp32.
        return roi_align(feature, indexed, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


class MultiLevelRoIAlign(nn.Module):
    """RoIAlign of each RoI on its pyramid level (FPN eq. 1, torchvision's ``LevelMapper``):
    level ``floor(canonical_level + log2(sqrt(area) / canonical_size))``, clamped to the levels of
    ``strides`` (the first of stride ``2^k_min``); ``features`` holds those levels first."""

    def __init__(
        self,
        output_size: int,
        sampling_ratio: int,
        *,
        strides: tuple[int, ...],
        canonical_size: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        self.output_size, self.sampling_ratio, self.strides = output_size, sampling_ratio, tuple(strides)
        self.canonical_size, self.canonical_level = canonical_size, canonical_level
        self.k_min = int(math.log2(self.strides[0]))
        self.k_max = self.k_min + len(self.strides) - 1

    def levels(self, rois: torch.Tensor) -> torch.Tensor:
        """Pyramid level index ``[R]`` (0 = the first of ``strides``) of each of ``rois [R, 4]``."""
        area = (rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])
        level = torch.floor(self.canonical_level + torch.log2(area.sqrt() / self.canonical_size) + 1e-6)
        return level.clamp(self.k_min, self.k_max).long() - self.k_min

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        indexed = indexed_rois(rois, image_index)
        levels = self.levels(indexed[:, 1:])
        # Each level pools its own RoIs, so each RoI is pooled once (a device sync per level on CUDA,
        # as torchvision's); index lists and a gather, as boolean-mask assignment does not export.
        rows = [(levels == level).nonzero()[:, 0] for level in range(len(self.strides))]
        pooled = torch.cat([
            roi_align(features[level], indexed[chosen], self.output_size, 1.0 / stride, self.sampling_ratio)
            for level, (chosen, stride) in enumerate(zip(rows, self.strides))
        ])  # fmt: skip
        return pooled[torch.cat(rows).argsort()]  # grouped by level -> RoI order
