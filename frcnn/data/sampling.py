"""Repeat-factor sampling (LVIS, Gupta et al. 2019): images of rare classes appear more often per epoch.

The rule of detectron2's ``RepeatFactorTrainingSampler``: with N training images and threshold t,

- ``f_c``: the fraction of the N images that hold at least one object of class c;
- ``r_c = max(1, sqrt(t / f_c))``: the class repeat factor (1 for a class in at least t of the images);
- ``r_i = max(r_c for the classes c in image i)``: the image repeat factor (1 for an image without objects);
- each epoch, image i appears ``floor(r_i)`` times, plus once more with probability ``frac(r_i)``
  (stochastic rounding), so an epoch holds ``sum(r_i)`` images on average.

The factors come from the dataset's :class:`~frcnn.data.annotation_index.AnnotationIndex` (no image is
decoded). Only the objects training learns from count: crowd objects never, "difficult" ones only with
``use_difficult`` (the targets :class:`~frcnn.data.dataset.DetectionDataset` trains on), so a class seen
only in crowd regions is not repeated for them and an image whose objects are all ignored has ``r_i = 1``.
N counts every training image, those without objects included (they are sampled too).
:class:`~frcnn.data.batching.GroupedBatchSampler` draws each epoch's repeats and order from
``(seed, epoch)`` alone, which keeps resuming exact.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.config import Sampler

logger = logging.getLogger(__name__)


def class_image_fractions(index: AnnotationIndex, keep: Optional[np.ndarray] = None) -> np.ndarray:
    """float64 [K + 1]: ``f_c``, the fraction of the N images holding an object of label c (entry 0,
    the background, is 0). ``keep`` (bool [M]): the boxes that count (default: all)."""
    images, labels = index.box_image_index, index.labels
    if keep is not None:
        images, labels = images[keep], labels[keep]
    num_labels = int(index.labels.max(initial=0)) + 1
    pairs = np.unique(images * num_labels + labels)  # each (image, label) once
    return np.bincount(pairs % num_labels, minlength=num_labels) / max(index.num_images, 1)


def repeat_factors(index: AnnotationIndex, threshold: float, use_difficult: bool = True) -> np.ndarray:
    """float64 [N]: ``r_i`` of each image (module docstring), counting only the boxes training learns from
    (:meth:`AnnotationIndex.trained_boxes`)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the repeat threshold must be in (0, 1], got {threshold}")
    keep = index.trained_boxes(use_difficult)
    fractions = class_image_fractions(index, keep)
    with np.errstate(divide="ignore"):  # a class no image holds has no factor and is never looked up
        class_factors = np.maximum(1.0, np.sqrt(threshold / fractions))
    factors = np.ones(index.num_images)
    np.maximum.at(factors, index.box_image_index[keep], class_factors[index.labels[keep]])
    return factors


def repeated_indices(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64 [sum of the draws]: each index i repeated ``floor(r_i)`` times, plus once more when a
    uniform draw from ``rng`` (one per index, always N draws) falls below ``frac(r_i)``; in index order."""
    whole = np.floor(factors)
    counts = whole.astype(np.int64) + (rng.random(len(factors)) < factors - whole)
    return np.repeat(np.arange(len(factors), dtype=np.int64), counts)


def train_repeat_factors(cfg, dataset) -> Optional[np.ndarray]:
    """The repeat factors of the training ``dataset`` under ``cfg.sampler`` (None: uniform sampling),
    logging the threshold, the images repeated and the mean factor when there are any."""
    if Sampler(cfg.sampler) == Sampler.uniform:
        return None
    factors = repeat_factors(dataset.index, cfg.repeat_threshold, dataset.use_difficult)
    logger.info(
        "repeat-factor sampling (threshold %g): %d of %d training images repeated, mean repeat factor %.3f "
        "(an epoch of %.0f images on average)",
        cfg.repeat_threshold, int((factors > 1).sum()), len(factors), factors.mean(), factors.sum(),
    )  # fmt: skip
    return factors
