"""Batches and loaders: padded collate, aspect-ratio grouped sampling, DataLoaders.

The training sampler is an infinite stream of epochs. Epoch ``e`` shuffles all indices
with ``numpy.random.default_rng([seed, e])``, draws one sample seed per index from the same
stream, keeps this rank's shard ``perm[rank::world_size]`` and groups it into batches of
images with the same orientation (landscape: w >= h, or portrait), emitted in the order
they fill; a group's last partial batch is completed with the first members of that group
in the epoch. So every index appears at least once per epoch, no batch mixes groups, and
the stream depends only on ``(seed, rank, world_size)``: starting at ``start_iter`` yields
exactly the batches an uninterrupted run yields from that iteration on.

With ``dataset.sampler=repeat_factor`` the epoch's list is first drawn from the same stream:
index i appears ``floor(r_i)`` times plus once more with probability ``frac(r_i)``
(:mod:`frcnn.data.sampling`), then that list is shuffled, given sample seeds, sharded and
grouped as above; it too depends only on ``(seed, epoch)``, so resuming is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler

from frcnn.data.build import build_dataset
from frcnn.data.sampling import repeated_indices, train_repeat_factors
from frcnn.utils.dist import get_rank, get_world_size


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        images: float32 Tensor[B, 3, H, W], normalised, zero-padded at the bottom/right to a
            multiple of ``size_divisibility``.
        image_sizes: B resized, unpadded (h, w).
        targets: B dicts with ``boxes`` float32 [N, 4] (x1, y1, x2, y2, resized coordinates),
            ``labels`` int64 [N] in 1..K, ``difficult`` bool [N], ``iscrowd`` bool [N].
        image_ids: B dataset image ids (int for COCO, str for VOC).
        indices: B dataset indices.
        orig_sizes: B original (h, w).
        scales: float32 Tensor[B, 2] of (sx, sy): resized = original * scale.
    """

    images: torch.Tensor
    image_sizes: list[tuple[int, int]]
    targets: list[dict[str, torch.Tensor]]
    image_ids: list
    indices: list[int]
    orig_sizes: list[tuple[int, int]]
    scales: torch.Tensor

    def __len__(self) -> int:
        return len(self.indices)

    def _map(self, fn) -> Batch:
        targets = [{k: fn(v) for k, v in t.items()} for t in self.targets]
        return dataclasses.replace(self, images=fn(self.images), targets=targets, scales=fn(self.scales))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) in its pinning thread."""
        return self._map(lambda t: t.pin_memory())


TARGET_KEYS = ("boxes", "labels", "difficult", "iscrowd")


def _round_up(side: int, multiple: int) -> int:
    return -(-side // multiple) * multiple if multiple > 1 else side


def size_buckets(cfg) -> tuple[int, ...]:
    """The padded side lengths of a compiled model's batches: ``cfg.size_buckets`` lengths evenly
    spaced from the shortest resize (``min_size``, ``test_min_size``) to ``max_size``, each a
    multiple of ``size_divisibility``. Every image side lies in that range after resizing, so a
    batch takes one of at most ``size_buckets ** 2`` shapes (in practice a handful: one side is
    the short side's length)."""
    low = _round_up(min([*cfg.min_size, cfg.test_min_size]), cfg.size_divisibility)
    high = _round_up(cfg.max_size, cfg.size_divisibility)
    if cfg.size_buckets == 1:
        return (high,)
    steps = (low + (high - low) * i / (cfg.size_buckets - 1) for i in range(cfg.size_buckets))
    return tuple(sorted({_round_up(math.ceil(step), cfg.size_divisibility) for step in steps}))


def padded_side(side: int, size_divisibility: int, buckets: Sequence[int] = ()) -> int:
    """``side`` rounded up to a multiple of ``size_divisibility``, then to the smallest of
    ``buckets`` that holds it (a side longer than every bucket keeps its multiple)."""
    side = _round_up(side, size_divisibility)
    return min((b for b in buckets if b >= side), default=side)


def collate(
    samples: Sequence[tuple[torch.Tensor, dict[str, Any]]], size_divisibility: int = 32, buckets: Sequence[int] = ()
) -> Batch:
    """Pad the images of ``samples`` (from ``DetectionDataset.__getitem__``) into one tensor, of
    a height and width :func:`padded_side` gives (``buckets``: :func:`size_buckets`, or none)."""
    images = [image for image, _ in samples]
    max_h = padded_side(max(image.shape[1] for image in images), size_divisibility, buckets)
    max_w = padded_side(max(image.shape[2] for image in images), size_divisibility, buckets)
    padded = images[0].new_zeros(len(images), 3, max_h, max_w)
    for k, image in enumerate(images):
        padded[k, :, : image.shape[1], : image.shape[2]].copy_(image)
    targets = [t for _, t in samples]
    return Batch(
        images=padded,
        image_sizes=[tuple(image.shape[1:]) for image in images],
        targets=[{key: t[key] for key in TARGET_KEYS} for t in targets],
        image_ids=[t["image_id"] for t in targets],
        indices=[t["index"] for t in targets],
        orig_sizes=[tuple(t["orig_size"]) for t in targets],
        scales=torch.tensor([t["scale"] for t in targets], dtype=torch.float32).reshape(-1, 2),
    )


def aspect_groups(aspect_ratios: np.ndarray) -> np.ndarray:
    """int64 [N]: 0 for landscape (w / h >= 1), 1 for portrait images."""
    return (np.asarray(aspect_ratios) < 1).astype(np.int64)


class GroupedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite, resumable, aspect-ratio grouped batch sampler (see the module docstring).

    Yields lists of ``batch_size`` pairs ``(dataset index, sample seed)``.

    Args:
        group_ids: int [N], the group of each dataset index.
        batch_size: images per batch (per rank).
        seed: shuffling seed, shared by all ranks.
        start_iter: number of batches to skip (the iteration to resume at).
        rank, world_size: this process's shard.
        repeat_factors: float [N], each >= 1: repeat-factor sampling
            (:func:`frcnn.data.sampling.repeat_factors`); None: each index once per epoch.
    """

    def __init__(self, group_ids: Sequence[int], batch_size: int, seed: int = 0, start_iter: int = 0,
                 rank: int = 0, world_size: int = 1, repeat_factors: Sequence[float] | None = None):  # fmt: skip
        if len(group_ids) < max(world_size, 1):
            raise ValueError(f"a training set of {len(group_ids)} images cannot feed {world_size} ranks")
        if batch_size < 1 or start_iter < 0:
            raise ValueError(f"need batch_size >= 1 and start_iter >= 0, got {batch_size}, {start_iter}")
        if repeat_factors is not None:
            repeat_factors = np.asarray(repeat_factors, dtype=np.float64)
            if repeat_factors.shape != (len(group_ids),) or not (repeat_factors >= 1).all():
                raise ValueError(f"need one repeat factor >= 1 for each of the {len(group_ids)} indices")
        self.group_ids = np.asarray(group_ids, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.start_iter = start_iter
        self.rank = rank
        self.world_size = world_size
        self.repeat_factors = repeat_factors

    def epoch_samples(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole epoch, every rank's shard: int64 dataset indices in their order and one int64
        sample seed for each, drawn from ``numpy.random.default_rng([seed, epoch])`` alone."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.repeat_factors is None:
            order = rng.permutation(len(self.group_ids))
        else:
            order = rng.permutation(repeated_indices(self.repeat_factors, rng))
        return order, rng.integers(0, 2**31 - 1, size=len(order))

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """The batches of one epoch of this rank's shard."""
        order, seeds = (part[self.rank :: self.world_size] for part in self.epoch_samples(epoch))
        samples = list(zip(order.tolist(), seeds.tolist()))
        groups = self.group_ids[order].tolist()
        batches, pending = [], {}
        for sample, group in zip(samples, groups):
            bucket = pending.setdefault(group, [])
            bucket.append(sample)
            if len(bucket) == self.batch_size:
                batches.append(bucket)
                pending[group] = []
        for group, bucket in pending.items():
            if bucket:
                members = [s for s, g in zip(samples, groups) if g == group]
                bucket += itertools.islice(itertools.cycle(members), self.batch_size - len(bucket))
                batches.append(bucket)
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        skip = self.start_iter
        for epoch in itertools.count():
            batches = self.epoch_batches(epoch)
            if skip >= len(batches):
                skip -= len(batches)
                continue
            yield from batches[skip:]
            skip = 0


def _loader(dataset, batch_sampler, cfg, num_workers: int | None, bucketed: bool) -> DataLoader:
    workers = cfg.num_workers if num_workers is None else num_workers
    buckets = size_buckets(cfg) if bucketed else ()
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=functools.partial(collate, size_divisibility=cfg.size_divisibility, buckets=buckets),
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def build_train_loader(
    cfg, batch_size: int, seed: int, start_iter: int = 0, num_workers: int | None = None, bucketed: bool = False
) -> DataLoader:
    """Infinite DataLoader of training :class:`Batch` es (``batch_size`` per rank).

    Deterministic given ``(seed, rank, world_size)``; resumes at ``start_iter``. The dataset
    is ``loader.dataset``; ``cfg.sampler`` chooses uniform or repeat-factor epochs. ``num_workers``
    defaults to ``cfg.num_workers``. ``bucketed`` (for a compiled model): batches are padded to
    :func:`size_buckets`.
    """
    dataset = build_dataset(cfg, "train")
    if batch_size > len(dataset):  # refused before any image is decoded or any batch allocated
        raise ValueError(
            f"train.batch_size={batch_size} is larger than the {len(dataset)} training images of "
            f"{cfg.name}: choose at most {len(dataset)} images per process"
        )
    rank, world_size = get_rank(), get_world_size()
    sampler = GroupedBatchSampler(
        aspect_groups(dataset.aspect_ratios), batch_size, seed, start_iter, rank, world_size,
        repeat_factors=train_repeat_factors(cfg, dataset),
    )  # fmt: skip
    return _loader(dataset, sampler, cfg, num_workers, bucketed)


def build_test_loader(cfg, batch_size: int, num_workers: int | None = None, bucketed: bool = False) -> DataLoader:
    """Finite DataLoader of test :class:`Batch` es in dataset order; when distributed, rank r
    gets indices ``r::world_size`` (no padding, no duplicates). ``bucketed``: as for training."""
    dataset = build_dataset(cfg, "test")
    rank, world_size = get_rank(), get_world_size()
    sampler = BatchSampler(range(rank, len(dataset), world_size), batch_size, drop_last=False)
    return _loader(dataset, sampler, cfg, num_workers, bucketed)


def image_batch(
    images: Sequence[torch.Tensor], transform, size_divisibility: int = 32, buckets: Sequence[int] = ()
) -> Batch:
    """uint8 Tensor[3, H, W] images without annotations as one test-time Batch: each resized and
    normalised by ``transform`` (a test-time DetectionTransform), then padded as :func:`collate`
    pads (``image_id`` / ``index``: the position in ``images``)."""
    samples = []
    empty = torch.zeros(0, dtype=torch.bool)
    for index, image in enumerate(images):
        tensor, _, scale = transform(image, torch.zeros(0, 4))
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "difficult": empty,
                  "iscrowd": empty, "image_id": index, "index": index, "orig_size": tuple(image.shape[1:]),
                  "scale": scale}  # fmt: skip
        samples.append((tensor, target))
    return collate(samples, size_divisibility, buckets)
