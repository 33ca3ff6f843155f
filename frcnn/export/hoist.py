"""The C4 box head with layer4's first 1x1 convolutions run once on the feature map, before RoIAlign.

RoIAlign is linear in the feature map: each output bin is a weighted sum of feature cells,
with the same weights in every channel. A 1x1 convolution without bias mixes channels cell by
cell, so the two commute: ``roi_align(conv(F)) == conv(roi_align(F))``. The C4 head runs two
1x1 convolutions on every RoI's ``S x S`` RoIAlign output (layer4's first ``conv1`` and its
stride-2 ``downsample``); on the shared ``[B, C4, H, W]`` map they cost ``H * W`` cells per
image instead of ``S * S`` (or ``(S/2)^2``) per RoI, far fewer whenever a few dozen RoIs are
pooled from a map of a few hundred cells. Biases (the folded batch norms) are added after
pooling, so the result equals the eager head's whatever RoIAlign's sample weights sum to.

The stride-2 ``downsample`` reads the even bins ``(2i, 2j)`` of the ``S x S`` grid. With bin
size ``b`` and ``g x g`` samples per bin, bin ``2i``'s samples sit at
``start + 2 i b + (k + 1/2) b / g`` (k < g): for each ``k``, these are the one-sample bins of an
``S/2 x S/2`` RoIAlign of the same RoI shifted by ``((k + 1/2) / g - 1) b``. So the shortcut
is the mean of ``g^2`` shifted one-sample RoIAligns of the projected map (the same samples,
the same count).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from frcnn.models.poolers import RoIPooler, indexed_rois
from frcnn.models.roi_head import Res5BoxHead


def _is_1x1(conv: nn.Module, stride: int) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (stride, stride)
        and conv.groups == 1
    )


def can_hoist(pooler: nn.Module, head: nn.Module) -> bool:
    """Whether :class:`HoistedRes5Head` applies: RoIAlign with a fixed sampling grid and an even
    output size, and a folded layer4 whose first block starts with 1x1 convolutions (the
    Bottleneck ResNets: 50, 101) and a 1x1 stride-2 ``downsample``."""
    if not (isinstance(pooler, RoIPooler) and isinstance(head, Res5BoxHead)):
        return False
    if pooler.kind != "roi_align" or pooler.sampling_ratio <= 0 or pooler.output_size % 2:
        return False
    block = head.layer4[0]
    downsample = getattr(block, "downsample", None)
    return (
        hasattr(block, "conv3")
        and _is_1x1(block.conv1, 1)
        and isinstance(block.bn1, nn.Identity)
        and isinstance(downsample, nn.Sequential)
        and _is_1x1(downsample[0], 2)
        and all(isinstance(m, nn.Identity) for m in downsample[1:])
    )


class HoistedRes5Head(nn.Module):
    """RoIAlign + :class:`Res5BoxHead` of a folded C4 model, with layer4's first 1x1 convolutions
    before the pooling (module docstring). ``forward(features [F], rois [R, 4], image_index [R])``
    -> ``[R, C5]``, equal to ``head(pooler(features, rois, image_index))``."""

    def __init__(self, pooler: RoIPooler, head: Res5BoxHead):
        super().__init__()
        if not can_hoist(pooler, head):
            raise ValueError("the head has no 1x1 convolutions to move before RoIAlign (see can_hoist)")
        self.output_size, self.spatial_scale = pooler.output_size, pooler.spatial_scale
        self.sampling_ratio, self.aligned = pooler.sampling_ratio, pooler.aligned
        block = head.layer4[0]
        self.reduce_weight, self.reduce_bias = self._split(block.conv1)
        self.project_weight, self.project_bias = self._split(block.downsample[0])
        self.conv2, self.bn2, self.conv3, self.bn3 = block.conv2, block.bn2, block.conv3, block.bn3
        self.blocks = head.layer4[1:]

    @staticmethod
    def _split(conv: nn.Conv2d) -> tuple[nn.Parameter, nn.Parameter]:
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        return nn.Parameter(conv.weight.detach().clone(), False), nn.Parameter(
            bias.detach().clone()[:, None, None], False
        )

    def shifted_rois(self, rois: torch.Tensor) -> torch.Tensor:
        """``rois [R, 5]`` (index, x1, y1, x2, y2) -> ``[g*g*R, 5]``: for each sample offset
        ``(ky, kx)``, the RoIs shifted so that one-sample bins of half the output size fall on
        the even bins' samples of the full-size grid."""
        g, scale = self.sampling_ratio, self.spatial_scale
        sides = (rois[:, 3:5] - rois[:, 1:3]) * scale  # (R, 2) width, height in feature cells
        if not self.aligned:  # RoIAlign's own rule for unaligned RoIs: at least one cell
            sides = sides.clamp(min=1.0)
        bins = sides / self.output_size / scale  # (R, 2) bin size in image pixels
        fractions = (torch.arange(g, dtype=rois.dtype, device=rois.device) + 0.5) / g - 1.0  # (g,)
        shifts = torch.stack(torch.meshgrid(fractions, fractions, indexing="ij"), dim=-1).reshape(
            -1, 1, 2
        )  # (g*g, 1, 2) (y, x)
        offsets = shifts.flip(-1) * bins[None]  # (g*g, R, 2) (x, y)
        shifted = rois[None].expand(g * g, -1, -1) + torch.cat(
            [torch.zeros_like(offsets[..., :1]), offsets, offsets], dim=-1
        )
        return shifted.reshape(-1, 5)

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        feature, indexed = features[0], indexed_rois(rois, image_index)
        size, scale = self.output_size, self.spatial_scale
        reduced = F.conv2d(feature, self.reduce_weight)  # (B, C, H, W): conv1 on every cell
        x = roi_align(reduced, indexed, size, scale, self.sampling_ratio, self.aligned) + self.reduce_bias
        x = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(F.relu(x))))))  # (R, C5, S/2, S/2)
        projected = F.conv2d(feature, self.project_weight)  # (B, C5, H, W): downsample on every cell
        g2 = self.sampling_ratio**2
        shortcut = roi_align(
            projected, self.shifted_rois(indexed), size // 2, scale, 1, self.aligned
        )  # (g*g*R, C5, S/2, S/2)
        shortcut = (
            shortcut.reshape(g2, -1, self.project_weight.shape[0], size // 2, size // 2).mean(dim=0) + self.project_bias
        )
        return self.blocks(F.relu(x + shortcut)).mean(dim=(2, 3))
