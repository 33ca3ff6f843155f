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
- ground truth (TensorBoard) is dashed white over the dark outline, captioned with its class
  name (white on dark) when its labels are given, and a legend along the bottom edge names both
  styles;
- an image smaller than ``min_side`` is enlarged first, so that captions and the legend stay
  readable (TensorBoard shows small training images at their own size).
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
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=color,
                width=width,
            )


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def caption_place(
    box: list[float], size: tuple[int, int], image_size: tuple[int, int], taken: list[tuple]
) -> Optional[tuple[int, int, int, int]]:
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


def _caption(draw: ImageDraw.ImageDraw, box: list[float], text: str, colors: tuple, font, taken: list) -> None:
    """``text`` on a filled box at the first free place around ``box`` (none: left out)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    place = caption_place(box, (right - left + 4, bottom - top + 4), draw.im.size, taken)
    if place is None:
        return
    taken.append(place)
    fill, ink = colors
    draw.rectangle(place, fill=fill, outline=OUTLINE)
    draw.text((place[0] + 2 - left, place[1] + 2 - top), text, fill=ink, font=font)


def _legend(draw: ImageDraw.ImageDraw, size: int, taken: list) -> None:
    """The legend along the bottom edge, shrunk to the image's width where needed."""
    width, height = draw.im.size
    while size > 6 and draw.textlength(LEGEND, font=_font(size)) > width - 4:
        size -= 1  # a narrow image gets a smaller legend, not a clipped one
    legend = draw.textbbox((0, 0), LEGEND, font=_font(size))
    top = height - (legend[3] - legend[1]) - 4
    taken.append((0, top, width, height))
    draw.rectangle(taken[-1], fill=OUTLINE)
    draw.text((2, top + 2 - legend[1]), LEGEND, fill=GROUND_TRUTH, font=_font(size))


def _enlarged(image: Image.Image, min_side: int) -> tuple[Image.Image, float]:
    """``image`` scaled up so that its short side is at least ``min_side``, and the factor."""
    factor = max(1.0, min_side / min(image.width, image.height))
    if factor == 1.0:
        return image, factor
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.BILINEAR), factor


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    class_names: list[str],
    score_threshold: float = 0.0,
    ground_truth: Optional[torch.Tensor] = None,
    ground_truth_labels: Optional[torch.Tensor] = None,
    min_side: int = 0,
) -> torch.Tensor:
    """Draw boxes captioned ``<class> <score>`` (and, optionally, dashed ground truth + a legend).

    image: Tensor[3, H, W], uint8, or float in [0, 1]. boxes: Tensor[N, 4] (x1, y1, x2, y2) in
    that image's pixel coordinates; labels: Tensor[N] int64 in 1..K; scores: Tensor[N].
    Detections scoring below ``score_threshold`` are left out. ground_truth: Tensor[M, 4]
    (x1, y1, x2, y2) boxes drawn dashed, with the legend; ground_truth_labels: Tensor[M] in 1..K,
    their class-name captions. min_side: the image (and the boxes) is enlarged to at least this
    short side first. Returns Tensor[3, H', W'] uint8 (H', W' = H, W unless enlarged).
    """
    pil, factor = _enlarged(_to_pil(image), min_side)
    draw = ImageDraw.Draw(pil)
    width, font = line_width(pil.height, pil.width), _font(font_size(pil.height, pil.width))
    taken: list[tuple] = []
    if ground_truth is not None:
        gt_boxes = (ground_truth.float().cpu() * factor).tolist()
        for box in gt_boxes:
            _rectangle(draw, box, GROUND_TRUTH, width, dashed=True)
        _legend(draw, font_size(pil.height, pil.width), taken)
        if ground_truth_labels is not None:
            for box, label in zip(gt_boxes, ground_truth_labels.tolist()):
                _caption(draw, box, class_names[label - 1], (OUTLINE, GROUND_TRUTH), font, taken)
    boxes = boxes * factor
    keep = scores >= score_threshold
    order = torch.argsort(scores[keep].float().cpu(), descending=True)
    boxes, labels, scores = boxes[keep].float().cpu()[order], labels[keep].cpu()[order], scores[keep].cpu()[order]
    palette = class_colors(len(class_names))
    for box, label in zip(boxes.tolist(), labels.tolist()):
        _rectangle(draw, box, palette[label - 1], width)
    for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
        _caption(draw, box, f"{class_names[label - 1]} {score:.2f}", (palette[label - 1], TEXT), font, taken)
    return _to_tensor(pil)


# Error-type colours of draw_error_types: kind -> (RGB, legend text).
ERROR_STYLE = {
    "tp": ((0, 220, 90), "correct"),
    "cls": ((255, 120, 0), "wrong class"),
    "loc": ((255, 221, 0), "poorly located"),
    "both": ((170, 110, 255), "class and location"),
    "dupe": ((0, 235, 255), "duplicate"),
    "bkg": ((255, 0, 200), "background"),
    "missed": ((255, 40, 40), "missed object"),
}


def _swatch_legend(draw: ImageDraw.ImageDraw, entries: list[tuple[tuple, str]], size: int, taken: list) -> None:
    """A bar along the bottom edge: a coloured square and its text per entry, wrapped to the width."""
    width, height = draw.im.size
    font = _font(size)
    rows, row, x = [], [], 2
    for color, text in entries:
        span = size + 4 + draw.textlength(text, font=font) + 10
        if row and x + span > width:
            rows.append(row)
            row, x = [], 2
        row.append((x, color, text))
        x += span
    rows.append(row)
    line = size + 6
    top = height - line * len(rows)
    taken.append((0, top, width, height))
    draw.rectangle(taken[-1], fill=OUTLINE)
    for r, items in enumerate(rows):
        y = top + r * line + 3
        for x, color, text in items:
            draw.rectangle([x, y, x + size, y + size], fill=color)
            draw.text((x + size + 4, y), text, fill=GROUND_TRUTH, font=font)


def draw_error_types(
    image: torch.Tensor,
    gt_boxes: np.ndarray,
    gt_missed: np.ndarray,
    boxes: np.ndarray,
    kinds: list[str],
    captions: list[str],
    min_side: int = 0,
) -> np.ndarray:
    """An image with its ground truth and its detections coloured by error type, and a legend.

    image: Tensor[3, H, W] uint8 (or float in [0, 1]). gt_boxes: [M, 4] (x1, y1, x2, y2) pixels,
    dashed: white, or red where ``gt_missed`` [M] (no detection found the object). boxes: [N, 4]
    detections drawn in the colour of their kind (a key of :data:`ERROR_STYLE`), captioned with
    ``captions`` [N] (drawn in the given order: put the most confident first). min_side: enlarge a
    smaller image first. Returns the picture as uint8 [H', W', 3].
    """
    pil, factor = _enlarged(_to_pil(image), min_side)
    draw = ImageDraw.Draw(pil)
    width, size = line_width(pil.height, pil.width), font_size(pil.height, pil.width)
    font = _font(size)
    taken: list[tuple] = []
    shown = [kind for kind in ERROR_STYLE if kind in kinds or (kind == "missed" and np.any(gt_missed))]
    entries = [(ERROR_STYLE[kind][0], ERROR_STYLE[kind][1]) for kind in shown]
    _swatch_legend(draw, entries + [(GROUND_TRUTH, "ground truth (dashed)")], max(8, size - 2), taken)
    for box, missed in zip((np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4) * factor).tolist(), gt_missed):
        _rectangle(draw, box, ERROR_STYLE["missed"][0] if missed else GROUND_TRUTH, width, dashed=True)
    scaled = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factor).tolist()
    for box, kind in zip(scaled, kinds):
        _rectangle(draw, box, ERROR_STYLE[kind][0], width)
    for box, kind, caption in zip(scaled, kinds, captions):
        _caption(draw, box, caption, (ERROR_STYLE[kind][0], TEXT), font, taken)
    return np.array(pil)
