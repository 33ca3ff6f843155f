"""A validation split held out of a dataset that has none (``dataset.val_fraction``).

:func:`stratified_holdout` picks ``fraction`` of the images, class-stratified and seeded: each image
is filed under the rarest class it holds (the class in the fewest images; images without objects
under a stratum of their own), and every stratum gives up its share, so a rare class is not left
out of the validation images (nor taken out of training entirely: a stratum of one image keeps it
for training). The same images, labels, fraction and seed always give the same split.

:func:`held_out_split` is what ``build_dataset`` uses: the split's image lists are kept in a JSON
file (``dataset.split_file``; train.py puts it in its run folder), written once and read back from
then on, so that evaluation and a resumed run use the very images the run was split into, even if
images were added to the folder since.
"""

from __future__ import annotations

import json
import os

import numpy as np

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.validation import DatasetError, Problem


def stratified_holdout(index: AnnotationIndex, fraction: float, seed: int) -> np.ndarray:
    """bool[N]: the images held out for validation (about ``fraction`` of each stratum, at least
    one image of a stratum of two or more)."""
    images_of_class = np.zeros(int(index.labels.max(initial=0)) + 1, dtype=np.int64)
    image_of_box = index.box_image_index
    pairs = np.unique(np.stack([image_of_box, index.labels]), axis=1)  # (image, class), once each
    np.add.at(images_of_class, pairs[1], 1)
    stratum = np.zeros(index.num_images, dtype=np.int64)  # 0: no object
    # each image's pairs by rarity (then label): the first is its rarest class
    order = np.lexsort((pairs[1], images_of_class[pairs[1]], pairs[0]))
    image, label = pairs[0][order], pairs[1][order]
    first = np.unique(image, return_index=True)[1]
    stratum[image[first]] = label[first]
    rng = np.random.default_rng(seed)
    held = np.zeros(index.num_images, dtype=bool)
    for value in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == value))
        count = int(round(fraction * len(members)))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        held[members[:count]] = True
    return held


def held_out_split(
    index: AnnotationIndex, fraction: float, seed: int, split_file: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """(bool[N] training images, bool[N] validation images): the lists of ``split_file`` when it
    exists (image ids under ``"train"`` and ``"val"``; an image added since is in neither), else
    :func:`stratified_holdout`, written to ``split_file`` when one is named."""
    ids = index.image_ids.astype(str)
    if split_file and os.path.exists(split_file):
        try:
            with open(split_file) as f:
                listed = json.load(f)
            val, train = set(map(str, listed["val"])), set(map(str, listed["train"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            reason = f"not a split file with train and val lists ({error})"
            raise DatasetError(Problem(split_file, None, reason)) from None
        unknown = sorted((val | train) - set(ids.tolist()))
        if unknown:
            reason = f"{len(unknown)} listed images are not in the dataset any more (first: {unknown[0]!r})"
            raise DatasetError(Problem(split_file, None, reason))
        return np.isin(ids, list(train)), np.isin(ids, list(val))
    held = stratified_holdout(index, fraction, seed)
    if split_file:
        os.makedirs(os.path.dirname(os.path.abspath(split_file)), exist_ok=True)
        temporary = f"{split_file}.tmp{os.getpid()}"
        with open(temporary, "w") as f:
            json.dump({"fraction": fraction, "seed": seed, "train": ids[~held].tolist(), "val": ids[held].tolist()}, f)
        os.replace(temporary, split_file)  # whole or absent: ranks racing write the same lists
    return ~held, held
