"""Detections drawn on images (predict.py output, TensorBoard images during training).

Style, chosen to stay readable on any photo:

- class colours from a fixed palette of saturated, light hues (yellow, magenta, cyan, orange,
  ...) that stand out from typical backgrounds (foliage greens, sky blues, greys, browns);
- every box line is drawn over a dark outline, so it shows on light and dark regions alike;
- captions ``<class> <score>`` on a filled box of the class colour in black text, with the
  font sized to the image (about 1/28 of its short side, at least 10 px);
- captions never overlap: each takes the first free place among above / inside the top /
  below / inside the bottom of its box (best scores placed first); one with no free place is
  left out (its box stays);
- ground truth (TensorBoard) is dashed white over the dark outline, without captions, and a
  legend along the bottom edge names both styles.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Saturated, light colours; none is a foliage green, a sky blue, a grey or a brown.
PALETTE = (
    (255, 221, 0),  # yellow
    (255, 0, 200),  # magenta
    (0, 235, 255),  # cyan
    (255, 120, 0),  # orange
    (180, 255, 0),  # lime
    (255, 90, 90),  # coral red
    (170, 110, 255),  # violet
    (255, 170, 220),  # pink
)
OUTLINE = (20, 20, 20)
TEXT = (0, 0, 0)
GROUND_TRUTH = (255, 255, 255)
LEGEND = "solid: prediction   dashed: ground truth"


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """The RGB colour of labels 1..K (entry label - 1): the palette, repeated past its length."""
    return [PALETTE[k % len(PALETTE)] for k in range(num_classes)]


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def font_size(height: int, width: int) -> int:
    """Caption font size in pixels for an image of ``height x width``."""
    return max(10, round(min(height, width) / 28))


def line_width(height: int, width: int) -> int:
    """Box line width in pixels (the dark outline adds one pixel each side)."""
    return max(1, round(min(height, width) / 250))


def _to_pil(image: torch.Tensor) -> Image.Image:
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(image.cpu().permute(1, 2, 0).numpy())


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _rectangle(draw: ImageDraw.ImageDraw, box: list[float], color, width: int, dashed: bool = False) -> None:
    """A box line of ``width`` px over a dark outline one pixel wider on each side."""
    x1, y1, x2, y2 = box
    if not dashed:
        draw.rectangle(box, outline=OUTLINE, width=width + 2)
        draw.rectangle([x1 + 1, y1 + 1, x2 - 1, y2 - 1], outline=color, width=width)
        return
    dash = 4 * (width + 1)
    edges = [((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))]
    for (ax, ay), (bx, by) in edges:
        draw.line([(ax, ay), (bx, by)], fill=OUTLINE, width=width + 2)
        length = max(abs(bx - ax), abs(by - ay))
        for start in np.arange(0, length, 2 * dash):
            t0, t1 = start / max(length, 1), min(start + dash, length) / max(length, 1)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=color, width=width)


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def caption_place(box: list[float], size: tuple[int, int], image_size: tuple[int, int],
                  taken: list[tuple]) -> Optional[tuple[int, int, int, int]]:
    """Where a caption of ``size`` (w, h) goes for ``box``: the first of above / inside the top /
    below / inside the bottom that lies in the image (width, height) and overlaps no ``taken``
    caption, as (x1, y1, x2, y2); None when there is no such place."""
    (w, h), (image_w, image_h) = size, image_size
    x1, y1, x2, y2 = box
    x = int(min(max(x1, 0), max(image_w - w, 0)))
    for y in (y1 - h, y1, y2, y2 - h):
        place = (x, int(y), x + w, int(y) + h)
        if place[1] >= 0 and place[3] <= image_h and not any(_overlaps(place, t) for t in taken):
            return place
    return None


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    class_names: list[str],
    score_threshold: float = 0.0,
    ground_truth: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Draw boxes captioned ``<class> <score>`` (and, optionally, dashed ground truth + a legend).

    image: Tensor[3, H, W], uint8, or float in [0, 1]. boxes: Tensor[N, 4] (x1, y1, x2, y2) in
    that image's pixel coordinates; labels: Tensor[N] int64 in 1..K; scores: Tensor[N].
    Detections scoring below ``score_threshold`` are left out. ground_truth: Tensor[M, 4]
    (x1, y1, x2, y2) boxes drawn dashed, with the legend. Returns Tensor[3, H, W] uint8.
    """
    pil = _to_pil(image)
    draw = ImageDraw.Draw(pil)
    width, font = line_width(pil.height, pil.width), _font(font_size(pil.height, pil.width))
    taken: list[tuple] = []
    if ground_truth is not None:
        for box in ground_truth.float().cpu().tolist():
            _rectangle(draw, box, GROUND_TRUTH, width, dashed=True)
        size = font_size(pil.height, pil.width)
        while size > 6 and draw.textlength(LEGEND, font=_font(size)) > pil.width - 4:
            size -= 1  # a narrow image gets a smaller legend, not a clipped one
        legend = draw.textbbox((0, 0), LEGEND, font=_font(size))
        top = pil.height - (legend[3] - legend[1]) - 4
        taken.append((0, top, pil.width, pil.height))
        draw.rectangle(taken[-1], fill=OUTLINE)
        draw.text((2, top + 2 - legend[1]), LEGEND, fill=GROUND_TRUTH, font=_font(size))
    keep = scores >= score_threshold
    order = torch.argsort(scores[keep].float().cpu(), descending=True)
    boxes, labels, scores = boxes[keep].float().cpu()[order], labels[keep].cpu()[order], scores[keep].cpu()[order]
    palette = class_colors(len(class_names))
    for box, label in zip(boxes.tolist(), labels.tolist()):
        _rectangle(draw, box, palette[label - 1], width)
    for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
        text = f"{class_names[label - 1]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        place = caption_place(box, (right - left + 4, bottom - top + 4), (pil.width, pil.height), taken)
        if place is None:
            continue
        taken.append(place)
        draw.rectangle(place, fill=palette[label - 1], outline=OUTLINE)
        draw.text((place[0] + 2 - left, place[1] + 2 - top), text, fill=TEXT, font=font)
    return _to_tensor(pil)
