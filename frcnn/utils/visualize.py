"""Detections drawn on images (predict.py output, TensorBoard images during training)."""

from __future__ import annotations

import colorsys

import torch
from torchvision.utils import draw_bounding_boxes


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """A distinct, stable RGB colour per label 1..K (entry label-1): evenly spaced hues."""
    colors = []
    for k in range(num_classes):
        red, green, blue = colorsys.hsv_to_rgb(k / max(num_classes, 1), 0.85, 1.0)
        colors.append((int(red * 255), int(green * 255), int(blue * 255)))
    return colors


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    class_names: list[str],
    score_threshold: float = 0.0,
    width: int = 2,
) -> torch.Tensor:
    """Draw boxes captioned ``<class> <score>`` on an image.

    image: Tensor[3, H, W], uint8, or float in [0, 1]. boxes: Tensor[N, 4] (x1, y1, x2, y2) in
    that image's pixel coordinates; labels: Tensor[N] int64 in 1..K; scores: Tensor[N].
    Detections scoring below ``score_threshold`` are left out. Returns Tensor[3, H, W] uint8.
    """
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    keep = scores >= score_threshold
    boxes, labels, scores = boxes[keep].float().cpu(), labels[keep].cpu(), scores[keep].cpu()
    if len(boxes) == 0:
        return image.cpu()
    palette = class_colors(len(class_names))
    captions = [f"{class_names[label - 1]} {score:.2f}" for label, score in zip(labels.tolist(), scores.tolist())]
    colors = [palette[label - 1] for label in labels.tolist()]
    return draw_bounding_boxes(image.cpu(), boxes, labels=captions, colors=colors, width=width)
