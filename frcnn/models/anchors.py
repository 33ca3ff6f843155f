"""Anchors: ``len(ratios) * len(scales)`` boxes per feature-map cell.

Boxes are ``(x1, y1, x2, y2)`` in continuous input-image pixels. The anchors of cell ``(i, j)``
are centred on ``(stride * (j + offset), stride * (i + offset))``; anchor ``a`` of that cell is
row ``(i * W + j) * A + a`` of the grid, matching the RPN head's output layout.

Why ``offset = 0`` is the default: in torchvision's ResNets (symmetric padding, strides in
conv1, the max-pool and the 3x3 convolutions) the receptive field of stride-16 feature cell
``j`` is centred on input pixel ~``16 * j``, which is where torchvision and detectron2 centre
their anchors. The seed design's Caffe-era anchors sit at ``base_size / 2 + 16 * j``
(``offset = 0.5``), half a stride off the features that predict them, and train worse
(docs/parity.md).
"""

import torch
from torch import nn


def cell_anchors(base_size: float, scales, ratios, round_to_pixels: bool = False) -> torch.Tensor:
    """Anchors of one cell centred on (0, 0), ``Tensor[A, 4]`` with ``A = len(ratios) * len(scales)``,
    ratio-major.

    An anchor of ratio ``r`` (height / width) and scale ``s`` has height ``base * s * sqrt(r)``
    and width ``base * s / sqrt(r)``, so its area is ``(base * s)^2``. ``round_to_pixels``
    rounds the corners to whole pixels (torchvision's convention).
    """
    ratios = torch.as_tensor(ratios, dtype=torch.float64)
    scales = torch.as_tensor(scales, dtype=torch.float64)
    heights = (base_size * scales[None, :] * ratios.sqrt()[:, None]).reshape(-1)
    widths = (base_size * scales[None, :] / ratios.sqrt()[:, None]).reshape(-1)
    anchors = torch.stack([-widths, -heights, widths, heights], dim=1) / 2
    return (anchors.round() if round_to_pixels else anchors).float()


class AnchorGenerator(nn.Module):
    """Anchors for a ``[H, W]`` feature map of the given stride: ``Tensor[H * W * A, 4]``.

    With ``input_size``, the padded input's ``(H_in, W_in)``, the strides are torchvision's
    instead: ``H_in // H`` down and ``W_in // W`` across. They differ from ``stride`` where the map
    does not tile the input: the stride-64 max-pool level of a 416 px side has 7 cells (half of 13
    at stride 32, rounded up), placed 416 // 7 = 59 px apart. Its cell ``j`` is computed around
    input pixel ``64 * j`` all the same: ``stride`` is where the features are, torchvision's
    spacing is what its detectors' weights were trained with.
    """

    def __init__(
        self, *, base_size: float, scales, ratios, stride: int, offset: float = 0.0, round_to_pixels: bool = False
    ):
        super().__init__()
        self.stride = stride
        self.offset = offset
        self.register_buffer("cell_anchors", cell_anchors(base_size, scales, ratios, round_to_pixels), persistent=False)

    @property
    def num_anchors(self) -> int:
        return self.cell_anchors.shape[0]

    def forward(self, feature_size: tuple[int, int], input_size: tuple[int, int] | None = None) -> torch.Tensor:
        height, width = feature_size
        if input_size is None:
            stride_y = stride_x = self.stride
        else:  # torchvision's
            stride_y, stride_x = input_size[0] // height, input_size[1] // width
        device = self.cell_anchors.device
        shift_y = (torch.arange(height, device=device, dtype=torch.float32) + self.offset) * stride_y
        shift_x = (torch.arange(width, device=device, dtype=torch.float32) + self.offset) * stride_x
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        # (H*W, 1, 4) + (1, A, 4) -> (H*W*A, 4)
        return (shifts + self.cell_anchors[None]).reshape(-1, 4)
