"""Box <-> delta coding of the seed design (R-CNN parameterisation, normalised by ``std``).

For a reference box ``(x1, y1, x2, y2)`` of width ``w = x2 - x1``, height ``h`` and centre
``(cx, cy)``, a target box is encoded as
``((tx - cx) / w, (ty - cy) / h, log(tw / w), log(th / h)) / std``.
Boxes are continuous pixel coordinates; all maths runs in float32 whatever the autocast state.
"""

import math

import torch

# Largest log-ratio a decoded width/height may take: boxes at most 1000/16 times their anchor.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes boxes as deltas relative to reference boxes and back; shapes ``[..., 4]``."""

    def __init__(self, std=(1.0, 1.0, 1.0, 1.0), scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.std = tuple(float(s) for s in std)
        self.scale_clamp = scale_clamp

    def _std(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.std, dtype=torch.float32, device=like.device)

    def encode(self, reference: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Deltas ``Tensor[..., 4]`` that turn ``reference`` into ``boxes`` (both ``[..., 4]``)."""
        reference, boxes = reference.float(), boxes.float()
        ref_wh = reference[..., 2:] - reference[..., :2]
        ref_ctr = reference[..., :2] + 0.5 * ref_wh
        box_wh = boxes[..., 2:] - boxes[..., :2]
        box_ctr = boxes[..., :2] + 0.5 * box_wh
        deltas = torch.cat([(box_ctr - ref_ctr) / ref_wh, torch.log(box_wh / ref_wh)], dim=-1)
        return deltas / self._std(deltas)

    def decode(self, reference: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """Boxes ``Tensor[..., 4]`` from ``deltas [..., 4]`` applied to ``reference [..., 4]``.

        ``dw``/``dh`` are clamped at ``scale_clamp`` so that exp() cannot overflow.
        """
        reference, deltas = reference.float(), deltas.float() * self._std(deltas)
        ref_wh = reference[..., 2:] - reference[..., :2]
        ref_ctr = reference[..., :2] + 0.5 * ref_wh
        ctr = ref_ctr + deltas[..., :2] * ref_wh
        half_wh = 0.5 * ref_wh * torch.exp(deltas[..., 2:].clamp(max=self.scale_clamp))
        return torch.cat([ctr - half_wh, ctr + half_wh], dim=-1)


def clip_boxes(boxes: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """Clip ``boxes [B, N, 4]`` to each image's ``(h, w)`` in ``image_sizes [B, 2]``."""
    hw = image_sizes.to(boxes.dtype)
    upper = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=1)[:, None, :]  # (B, 1, 4)
    return torch.minimum(boxes.clamp(min=0), upper)
