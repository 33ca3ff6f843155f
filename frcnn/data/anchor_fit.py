"""How well a model's anchors fit a dataset's boxes (``scripts/check_dataset.py``).

The RPN learns to propose a box from the anchors that overlap it: an anchor is positive when its
IoU with the box reaches ``model.rpn.pos_iou_thresh``; a box that no anchor reaches only gets
its best anchor(s) as positives (the low-quality matches) and is proposed less well. This module
compares the boxes' sizes as the model sees them (after the test-time resize: short side
``dataset.test_min_size``, long side at most ``dataset.max_size``) with the anchor sizes, and counts
the boxes whose best anchor stays under the threshold.

The IoU is shape-only: each anchor is centred on the box, so the best IoU is what an anchor of
that size and aspect ratio reaches at an ideal position. The real anchors sit on a grid of
``model.anchors.stride`` pixels, so a box between two centres reaches less (much less for boxes
not much larger than the stride): the share counted here is a lower bound.

The data layer does not import the models (they are siblings): :class:`AnchorSpec` holds the
numbers, which the command fills from the ``model`` config (:mod:`frcnn.cli.check_dataset`).
Shapes: M boxes, A anchor shapes; a size is ``sqrt(w * h)`` in input pixels; ratios are height / width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.transforms import resized_size

MAX_BELOW_SHARE = 0.05  # more boxes than this under the threshold: a suggestion
# The warning needs more than MAX_BELOW_SHARE of the boxes under this IoU too. Boxes between two anchor
# sizes an octave apart (a square between squares of sizes s and 2s reaches 1/2 at best, centred) stay
# under 0.7 and still train well through the RPN's low-quality matches: the table counts them, the
# warning is for the boxes the anchors miss by more (outside their sizes or aspect ratios).
POORLY_COVERED_IOU = 0.5
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
# Suggested values go at most 2^MAX_STEPS beyond the smallest / largest value (_candidates).
MAX_STEPS = {"scales": 4, "ratios": 3}
MAX_ROUNDS = 6
SAMPLE = 20000  # at most this many boxes in the search of a suggestion (a seeded sample)
_CHUNK = 1 << 15  # boxes per IoU block: [chunk, A] floats


@dataclass(frozen=True)
class AnchorSpec:
    """A model's anchors as numbers: ``model.anchors`` expanded to its feature levels, and the RPN's
    positive threshold.

    base_sizes: one per level (C4: one; FPN: one per pyramid level, doubling or the same);
    scales, ratios: ``model.anchors.scales`` and ``ratios``; round_to_pixels: ``model.anchors.round``;
    pos_iou_thresh: ``model.rpn.pos_iou_thresh``.
    """

    base_sizes: tuple[float, ...]
    scales: tuple[float, ...]
    ratios: tuple[float, ...]
    round_to_pixels: bool = False
    pos_iou_thresh: float = 0.7

    def shapes(self) -> np.ndarray:
        """``(w, h)`` of every anchor shape, float64 [A, 2] (A = levels x ratios x scales)."""
        return anchor_shapes(self.base_sizes, self.scales, self.ratios, self.round_to_pixels)

    def sizes(self) -> list[float]:
        """The distinct anchor sizes ``base_size x scale`` of all levels, ascending."""
        return sorted({float(base * scale) for base in self.base_sizes for scale in self.scales})

    def describe(self) -> str:
        """The settings, for the report: ``base_size 16 x scales [8, 16, 32]`` (and the levels)."""
        base = f"base_size {_num(self.base_sizes[0])}"
        if len(self.base_sizes) > 1:
            growth = "doubled at each" if self.base_sizes[1] == 2 * self.base_sizes[0] else "the same at each"
            base = f"{base}, {growth} of {len(self.base_sizes)} levels,"
        return f"{base} x scales {_list(self.scales)}; ratios (h/w) {_list(self.ratios)}"


def anchor_shapes(base_sizes: Sequence[float], scales, ratios, round_to_pixels: bool = False) -> np.ndarray:
    """``(w, h)`` float64 [A, 2] of the anchors of every level, as
    :func:`frcnn.models.anchors.cell_anchors` makes them: ratio ``r`` (h/w) and scale ``s`` give
    ``h = base * s * sqrt(r)`` and ``w = base * s / sqrt(r)``; ``round_to_pixels`` rounds the
    corners ``(+-w/2, +-h/2)`` to whole pixels."""
    base = np.asarray(base_sizes, dtype=np.float64)[:, None, None]  # (L, 1, 1)
    side = base * np.asarray(scales, dtype=np.float64)[None, None, :]  # (L, 1, S)
    root = np.sqrt(np.asarray(ratios, dtype=np.float64))[None, :, None]  # (1, R, 1)
    w, h = (side / root).reshape(-1), (side * root).reshape(-1)  # (L, R, S) -> (L*R*S,)
    if round_to_pixels:  # cell_anchors rounds in float32, half to even, as numpy does
        w = 2 * np.round((w / 2).astype(np.float32)).astype(np.float64)
        h = 2 * np.round((h / 2).astype(np.float32)).astype(np.float64)
    return np.stack([w, h], axis=1)


def best_centred_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """The best IoU of each box with any anchor centred on it: ``boxes`` [M, 2] and ``anchors``
    [A, 2] as ``(w, h)`` -> float64 [M] (0 when there is no anchor)."""
    best = np.zeros(len(boxes))
    if not len(anchors):
        return best
    anchors = np.unique(anchors, axis=0)  # levels of the same sizes repeat their shapes
    aw, ah = anchors[None, :, 0], anchors[None, :, 1]
    for start in range(0, len(boxes), _CHUNK):
        w, h = boxes[start : start + _CHUNK, 0:1], boxes[start : start + _CHUNK, 1:2]
        inter = np.minimum(w, aw) * np.minimum(h, ah)  # (m, A)
        union = w * h + aw * ah - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            best[start : start + _CHUNK] = np.nan_to_num(inter / union).max(axis=1)
    return best


def resized_box_shapes(index: AnnotationIndex, keep: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """``(w, h)`` float64 [M', 2] of the boxes where ``keep`` (bool[M]) holds, scaled as the
    test-time resize scales their image (:func:`frcnn.data.transforms.resized_size`)."""
    pairs, inverse = np.unique(np.stack([index.heights, index.widths], axis=1), axis=0, return_inverse=True)
    factors = np.empty((len(pairs), 2))  # (sx, sy) of each distinct image size
    for row, (height, width) in enumerate(pairs.tolist()):
        new_h, new_w = resized_size(height, width, min_size, max_size)
        factors[row] = new_w / width, new_h / height
    boxes = index.boxes[keep].astype(np.float64)
    return (boxes[:, 2:] - boxes[:, :2]) * factors[inverse.reshape(-1)[index.box_image_index[keep]]]


@dataclass(frozen=True)
class Suggestion:
    """Anchor settings that bring boxes to the threshold: the new ``scales`` and ``ratios`` and
    ``covered``, how many of the boxes under it they bring there."""

    scales: tuple[float, ...]
    ratios: tuple[float, ...]
    covered: int


def _candidates(values: Sequence[float], key: str, period: float | None = None) -> list[float]:
    """Values one could add to ``values`` (ascending): half-octave steps (factors of sqrt(2)) below
    the smallest or above the largest, up to 2^MAX_STEPS[key] away, or the geometric midpoint of
    two neighbours; ``period``: the next level's anchors are ``period`` times larger (FPN's
    doubling), so the largest value's neighbour is also ``period`` times the smallest. A box of any
    size in reach is within 2^(1/4) of a step: a square one reaches IoU 2^(-1/2) with an anchor."""
    low, high = values[0], values[-1]
    steps = [2 ** (j / 2) for j in range(1, 2 * MAX_STEPS[key] + 1)]
    neighbours = [*values, low * period] if period else list(values)
    found = [low / f for f in steps] + [high * f for f in steps]
    found += [float(np.sqrt(a * b)) for a, b in zip(neighbours, neighbours[1:]) if b > a]
    return [float(_num(v)) for v in found]  # the values as the warning writes them


def suggest_anchors(boxes: np.ndarray, spec: AnchorSpec, total: int) -> Suggestion:
    """Extend ``spec.scales`` and ``spec.ratios`` until at most MAX_BELOW_SHARE of ``total`` boxes
    stay under ``spec.pos_iou_thresh``; ``boxes`` ``(w, h)`` [M, 2] are those under it now.

    Greedy: each round adds the candidate value (:func:`_candidates`) that brings the most of the
    boxes left to the threshold (on a tie, the one they fit best); it stops when none brings any,
    or after MAX_ROUNDS. Over SAMPLE boxes, the search runs on a seeded sample of SAMPLE and
    ``covered`` is scaled up from it.
    """
    values = {"scales": sorted(spec.scales), "ratios": sorted(spec.ratios)}
    base = spec.base_sizes
    period = base[1] / base[0] if len(base) > 1 and base[1] > base[0] else None
    weight = 1.0  # boxes each box searched stands for
    if len(boxes) > SAMPLE:
        weight = len(boxes) / SAMPLE
        boxes = boxes[np.random.default_rng(0).choice(len(boxes), SAMPLE, replace=False)]
    left = boxes
    for _ in range(MAX_ROUNDS):
        if len(left) * weight <= MAX_BELOW_SHARE * total:
            break
        best_score, best = (0, 0.0), None
        for key in ("scales", "ratios"):
            for value in _candidates(values[key], key, period if key == "scales" else None):
                # Only the added anchors can reach the boxes left: the others reach none of them.
                grid = {**values, key: [value]}
                iou = best_centred_iou(left, anchor_shapes(base, grid["scales"], grid["ratios"], spec.round_to_pixels))
                reached = iou >= spec.pos_iou_thresh
                score = (int(reached.sum()), float(iou[reached].sum()))
                if score > best_score:
                    best_score, best = score, (key, value, reached)
        if best is None:
            break
        key, value, reached = best
        values[key] = sorted([*values[key], value])
        left = left[~reached]
    return Suggestion(tuple(values["scales"]), tuple(values["ratios"]), round((len(boxes) - len(left)) * weight))


@dataclass(frozen=True)
class AnchorFit:
    """The boxes of a split against a model's anchors.

    spec: the anchors; min_size, max_size: the resize the boxes were scaled by; box_sizes: float64
    [M] ``sqrt(w * h)`` after it; best_iou: float64 [M], each box's best shape-only IoU;
    suggestion: when more than MAX_BELOW_SHARE of the boxes are under the threshold, what would
    bring them to it.
    """

    spec: AnchorSpec
    min_size: int
    max_size: int
    box_sizes: np.ndarray
    best_iou: np.ndarray
    smaller: int  # boxes under the threshold that are smaller than the smallest anchor
    larger: int  # ... larger than the largest
    suggestion: Suggestion | None

    @property
    def below(self) -> int:
        """How many boxes no anchor shape reaches the threshold with."""
        return int((self.best_iou < self.spec.pos_iou_thresh).sum())

    @property
    def share_below(self) -> float:
        return self.below / max(len(self.best_iou), 1)


def fit_anchors(boxes: np.ndarray, spec: AnchorSpec, min_size: int, max_size: int) -> AnchorFit:
    """The :class:`AnchorFit` of boxes ``(w, h)`` [M, 2] already resized (:func:`resized_box_shapes`
    with the same ``min_size`` and ``max_size``)."""
    best = best_centred_iou(boxes, spec.shapes())
    sizes = np.sqrt(boxes[:, 0] * boxes[:, 1])
    below = best < spec.pos_iou_thresh
    anchor_sizes = spec.sizes()
    suggestion = None
    if below.sum() > MAX_BELOW_SHARE * len(boxes):
        suggestion = suggest_anchors(boxes[below], spec, len(boxes))
    return AnchorFit(
        spec, min_size, max_size, sizes, best,
        smaller=int((below & (sizes < anchor_sizes[0])).sum()),
        larger=int((below & (sizes > anchor_sizes[-1])).sum()),
        suggestion=suggestion,
    )  # fmt: skip


def format_anchor_fit(fit: AnchorFit, split: str) -> list[str]:
    """A short table: the quantiles of the box sizes and of their best IoU, the anchor sizes, and
    the share under the threshold."""
    if not len(fit.box_sizes):
        return [f"anchors: no box in the {split} split to compare with"]
    head = "".join(f"{'min' if q == 0 else 'max' if q == 1 else f'{q:.0%}':>7}" for q in QUANTILES)
    sizes = "".join(f"{v:>7.1f}" for v in np.quantile(fit.box_sizes, QUANTILES))
    ious = "".join(f"{v:>7.2f}" for v in np.quantile(fit.best_iou, QUANTILES))
    thresh = fit.spec.pos_iou_thresh
    return [
        f"anchors: {split} boxes after the test resize (short side {fit.min_size}, long side <= {fit.max_size}) "
        f"against model.anchors",
        f"  {'quantile':<22}{head}",
        f"  {'box size sqrt(w*h) px':<22}{sizes}",
        f"  {'best anchor IoU':<22}{ious}   (shape only: anchor centred on the box)",
        f"  anchor sizes px: {', '.join(_num(s) for s in fit.spec.sizes())} ({fit.spec.describe()})",
        f"  under model.rpn.pos_iou_thresh {_num(thresh)}: {fit.below} of {len(fit.best_iou)} boxes "
        f"({fit.share_below:.1%})",
    ]


def anchor_warning(fit: AnchorFit) -> str | None:
    """The warning when more than MAX_BELOW_SHARE of the boxes stay under the threshold and under
    POORLY_COVERED_IOU, naming the anchor settings that would bring them to the threshold; else None."""
    poorly_covered = int((fit.best_iou < POORLY_COVERED_IOU).sum())
    if fit.suggestion is None or poorly_covered <= MAX_BELOW_SHARE * len(fit.best_iou):
        return None
    spec, thresh = fit.spec, _num(fit.spec.pos_iou_thresh)
    sizes = spec.sizes()
    kinds = [f"{fit.smaller} smaller than the smallest anchor ({_num(sizes[0])} px)" if fit.smaller else "",
             f"{fit.larger} larger than the largest ({_num(sizes[-1])} px)" if fit.larger else "",
             f"{fit.below - fit.smaller - fit.larger} between the sizes or of other aspect ratios"
             if fit.below > fit.smaller + fit.larger else ""]  # fmt: skip
    text = (
        f"{fit.share_below:.1%} of the {len(fit.best_iou)} boxes ({fit.below}) have no anchor shape with IoU >= "
        f"{thresh} (model.rpn.pos_iou_thresh), even centred on them: {', '.join(k for k in kinds if k)}"
    )
    new = fit.suggestion
    changes = [f"model.anchors.{key}=[{','.join(_num(v) for v in values)}]"
               for key, values, old in (("scales", new.scales, spec.scales), ("ratios", new.ratios, spec.ratios))
               if sorted(values) != sorted(old)]  # fmt: skip
    if not changes:
        reach = f"scales within a factor {2 ** MAX_STEPS['scales']} or ratios within {2 ** MAX_STEPS['ratios']}"
        return f"{text}; no {reach} of the present ones bring them to {thresh}"
    left = (fit.below - new.covered) / len(fit.best_iou)
    return f"{text}; {' '.join(changes)} would bring {new.covered} of them to {thresh} ({left:.1%} left under it)"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _list(values: Sequence[float]) -> str:
    return f"[{', '.join(_num(v) for v in values)}]"
