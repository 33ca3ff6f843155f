"""Validation loss: the training loss terms on the test split, from the evaluation forward.

The model returns the losses next to the detections when it gets targets in eval mode
(normalisation layers in eval mode, the test-time proposals, the training target assignment
and sampling). The sampling is random: each batch reseeds it from a fixed seed and the dataset
index of its first image, inside a forked RNG, so that the value depends only on the weights
and the batches (not on the rank that runs a batch, nor on what ran before) and training's
random streams are left exactly where they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from frcnn.models.faster_rcnn import LOSS_TERMS  # the detector's loss terms, as the model declares them
from frcnn.utils.dist import all_gather_object


def has_annotations(dataset) -> bool:
    """Whether ``dataset`` (a DetectionDataset) has any object to compute a loss against."""
    return dataset.index.num_boxes > 0


def loss_targets(targets: list[dict], use_difficult: bool = True) -> list[dict]:
    """The targets training would use: crowd boxes dropped, difficult ones too unless
    ``use_difficult`` (test batches carry every object). Boxes ``[N, 4]``, labels ``[N]``."""
    kept = []
    for target in targets:
        keep = ~target["iscrowd"]
        if not use_difficult:
            keep &= ~target["difficult"]
        kept.append({"boxes": target["boxes"][keep], "labels": target["labels"][keep]})
    return kept


@contextlib.contextmanager
def forked_rng(device: torch.device) -> Iterator[None]:
    """Run the block on a fork of the CPU RNG (and of ``device``'s when it is a GPU): what it
    draws or seeds is undone on exit."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


def reseed(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and ``device``'s (only that GPU's, so a fork restores it)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def batch_seed(seed: int, indices: list[int]) -> int:
    """The sampling seed of a batch: ``seed`` plus the dataset index of its first image."""
    return seed + int(indices[0])


class ValidationLoss:
    """Image-weighted mean of per-batch loss terms, over every rank's batches.

    Batches are recorded by the dataset index of their first image and summed in that order, so
    a value does not depend on how the batches were spread over processes.
    """

    def __init__(self):
        self._batches: dict[int, tuple[int, list[float]]] = {}

    def reset(self) -> None:
        self._batches = {}

    def __bool__(self) -> bool:
        return bool(self._batches)

    def process(self, indices: list[int], losses: dict[str, torch.Tensor]) -> None:
        """Record a batch's losses (scalar tensors named :data:`LOSS_TERMS`) for its ``indices``."""
        values = torch.stack([losses[name].detach().float() for name in LOSS_TERMS]).tolist()
        self._batches[int(indices[0])] = (len(indices), values)

    def gather(self) -> None:
        """Merge every rank's batches into each rank's record (a collective when distributed)."""
        self._batches = {k: v for part in all_gather_object(self._batches) for k, v in part.items()}

    def summarize(self) -> dict[str, float]:
        """metrics.json's ``val_loss``: each term's image-weighted mean and their sum, ``total``."""
        sums, images = [0.0] * len(LOSS_TERMS), 0
        for first in sorted(self._batches):
            count, values = self._batches[first]
            images += count
            sums = [total + count * value for total, value in zip(sums, values)]
        means = {name: total / images for name, total in zip(LOSS_TERMS, sums)}
        return {**means, "total": sum(means.values())}
