"""Box-aware detection transforms (torchvision.transforms.v2 functional ops on tv_tensors).

Randomness (which training scale, whether to flip) is drawn from a ``torch.Generator``
seeded per sample by the batch sampler, so a sample's augmentation depends only on its
seed, never on worker processes or the global RNG state: runs are reproducible and resumable.

Boxes are ``tv_tensors.BoundingBoxes`` in XYXY format, continuous 0-based pixel
coordinates: resizing scales them by ``(sx, sy) = (new_w / w, new_h / h)`` and a horizontal
flip maps ``x -> W - x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the short side ``min_size``, unless the long side would pass ``max_size``."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class DetectionTransform:
    """Resize (short side drawn from ``min_sizes``, long side <= ``max_size``), optional
    horizontal flip with probability ``flip_prob``, float conversion and ImageNet normalisation.

    Call with a uint8 Tensor[3, H, W], boxes Tensor[N, 4] (original coordinates) and a
    ``torch.Generator`` (only used when there is a random choice; None: the global RNG); returns the float32
    normalised Tensor[3, h, w], the boxes Tensor[N, 4] in resized coordinates and the scale
    ``(sx, sy)`` with ``resized = original * scale``.
    """

    min_sizes: Sequence[int]
    max_size: int
    flip_prob: float = 0.0
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
        height, width = image.shape[-2:]
        min_size = self.min_sizes[0]
        if len(self.min_sizes) > 1:
            choice = torch.randint(len(self.min_sizes), (), generator=generator)
            min_size = self.min_sizes[int(choice)]
        flip = self.flip_prob > 0 and float(torch.rand((), generator=generator)) < self.flip_prob

        new_h, new_w = resized_size(height, width, min_size, self.max_size)
        image = tv_tensors.Image(image)
        boxes = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))
        image, boxes = F.resize(image, [new_h, new_w], antialias=True), F.resize(boxes, [new_h, new_w])
        if flip:
            image, boxes = F.horizontal_flip(image), F.horizontal_flip(boxes)
        image = F.normalize(F.to_dtype(image, torch.float32, scale=True), self.mean, self.std)
        scale = (new_w / width, new_h / height)
        return image.as_subclass(torch.Tensor), boxes.as_subclass(torch.Tensor), scale


def build_transform(cfg, train: bool) -> DetectionTransform:
    """The train (multi-scale, flip) or test (single scale) transform of a ``dataset`` config."""
    if train:
        return DetectionTransform(tuple(cfg.min_size), cfg.max_size, cfg.flip_prob)
    return DetectionTransform((cfg.test_min_size,), cfg.max_size, 0.0)
