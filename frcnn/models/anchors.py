"""Anchors of the seed design: ``len(ratios) * len(scales)`` boxes per feature-map cell.

Boxes are ``(x1, y1, x2, y2)`` in continuous input-image pixels. The cell anchors are centred
on ``(base_size / 2, base_size / 2)`` and shifted by ``stride`` per cell; anchor ``a`` of cell
``(i, j)`` is row ``(i * W + j) * A + a`` of the grid, matching the RPN head's output layout.
"""

import torch
from torch import nn


def cell_anchors(base_size: float, scales, ratios) -> torch.Tensor:
    """Anchors of one cell, ``Tensor[A, 4]`` with ``A = len(ratios) * len(scales)``, ratio-major.

    An anchor of ratio ``r`` (height / width) and scale ``s`` has height ``base * s * sqrt(r)``
    and width ``base * s / sqrt(r)``, so its area is ``(base * s)^2``.
    """
    ratios = torch.as_tensor(ratios, dtype=torch.float64)
    scales = torch.as_tensor(scales, dtype=torch.float64)
    heights = (base_size * scales[None, :] * ratios.sqrt()[:, None]).reshape(-1)
    widths = (base_size * scales[None, :] / ratios.sqrt()[:, None]).reshape(-1)
    centre = base_size / 2.0
    anchors = torch.stack(
        [centre - widths / 2, centre - heights / 2, centre + widths / 2, centre + heights / 2], dim=1
    )
    return anchors.float()


class AnchorGenerator(nn.Module):
    """Anchors for a ``[H, W]`` feature map of the given stride: ``Tensor[H * W * A, 4]``."""

    def __init__(self, *, base_size: float, scales, ratios, stride: int):
        super().__init__()
        self.stride = stride
        self.register_buffer("cell_anchors", cell_anchors(base_size, scales, ratios), persistent=False)

    @property
    def num_anchors(self) -> int:
        return self.cell_anchors.shape[0]

    def forward(self, feature_size: tuple[int, int]) -> torch.Tensor:
        height, width = feature_size
        device = self.cell_anchors.device
        shift_y = torch.arange(height, device=device, dtype=torch.float32) * self.stride
        shift_x = torch.arange(width, device=device, dtype=torch.float32) * self.stride
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        # (H*W, 1, 4) + (1, A, 4) -> (H*W*A, 4)
        return (shifts + self.cell_anchors[None]).reshape(-1, 4)

