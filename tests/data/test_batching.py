"""Collate padding, the grouped batch sampler, and the train/test loaders."""

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from frcnn.data import Batch, GroupedBatchSampler, build_test_loader, build_train_loader, collate
from frcnn.data.batching import padded_side, size_buckets


def _sample(height, width, n_boxes, index):
    target = {
        "boxes": torch.ones(n_boxes, 4), "labels": torch.ones(n_boxes, dtype=torch.int64),
        "difficult": torch.zeros(n_boxes, dtype=torch.bool), "iscrowd": torch.zeros(n_boxes, dtype=torch.bool),
        "image_id": f"img{index}", "index": index, "orig_size": (2 * height, 2 * width), "scale": (0.5, 0.5),
    }  # fmt: skip
    return torch.full((3, height, width), 1.0 + index), target


def test_collate_pads_to_size_divisibility():
    batch = collate([_sample(50, 70, 2, 0), _sample(64, 40, 0, 1)], size_divisibility=32)
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.images.shape == (2, 3, 64, 96)
    assert batch.image_sizes == [(50, 70), (64, 40)]
    assert (batch.images[0, :, :50, :70] == 1).all() and (batch.images[0, :, 50:] == 0).all()
    assert (batch.images[0, :, :, 70:] == 0).all() and (batch.images[1, :, :, 40:] == 0).all()
    assert (batch.images[1, :, :64, :40] == 2).all()
    assert batch.image_ids == ["img0", "img1"] and batch.indices == [0, 1]
    assert batch.orig_sizes == [(100, 140), (128, 80)]
    assert batch.scales.shape == (2, 2) and batch.scales.dtype == torch.float32
    assert [len(t["boxes"]) for t in batch.targets] == [2, 0]
    assert set(batch.targets[0]) == {"boxes", "labels", "difficult", "iscrowd"}
    moved = batch.to("cpu")
    assert torch.equal(moved.images, batch.images) and moved.image_ids == batch.image_ids
    assert collate([_sample(50, 70, 1, 0)], size_divisibility=1).images.shape == (1, 3, 50, 70)


def test_size_buckets_span_the_resize_range_in_multiples_of_the_divisor():
    voc = OmegaConf.create({"min_size": [600], "test_min_size": 600, "max_size": 1000, "size_divisibility": 32,
                            "size_buckets": 4})  # fmt: skip
    assert size_buckets(voc) == (608, 768, 896, 1024)
    multiscale = OmegaConf.merge(voc, {"min_size": [480, 800], "max_size": 1333})
    assert size_buckets(multiscale) == (480, 768, 1056, 1344)
    assert size_buckets(OmegaConf.merge(voc, {"size_buckets": 1})) == (1024,)
    assert [padded_side(side, 32, (608, 768)) for side in (500, 608, 609, 800)] == [608, 608, 768, 800]


def test_collate_pads_to_the_smallest_bucket_that_holds_the_batch():
    batch = collate([_sample(50, 70, 1, 0), _sample(40, 100, 1, 1)], size_divisibility=32, buckets=(64, 128, 192))
    assert batch.images.shape == (2, 3, 64, 128) and batch.image_sizes == [(50, 70), (40, 100)]
    assert (batch.images[1, :, :40, :100] == 2).all() and (batch.images[1, :, 40:] == 0).all()


def test_a_bucketed_loader_meets_only_bucket_sizes(tiny_shapes_cfg):
    cfg = tiny_shapes_cfg(min_size=[48, 64], flip_prob=0.5)
    buckets = size_buckets(cfg)
    batches = list(itertools.islice(build_train_loader(cfg, batch_size=2, seed=0, num_workers=0, bucketed=True), 8))
    assert {b.images.shape[2] for b in batches} | {b.images.shape[3] for b in batches} <= set(buckets)
    plain = list(itertools.islice(build_train_loader(cfg, batch_size=2, seed=0, num_workers=0), 8))
    assert [b.indices for b in plain] == [b.indices for b in batches]  # the same stream, only padded more


GROUPS = np.random.default_rng(0).integers(0, 2, size=37)


def test_grouped_sampler_never_mixes_groups_and_covers_every_index_each_epoch():
    sampler = GroupedBatchSampler(GROUPS, batch_size=4, seed=1)
    for epoch in range(3):
        batches = sampler.epoch_batches(epoch)
        assert all(len(b) == 4 for b in batches)
        assert all(len({GROUPS[i] for i, _ in b}) == 1 for b in batches)
        counts = Counter(i for b in batches for i, _ in b)
        assert set(counts) == set(range(37))
        sizes = np.bincount(GROUPS)
        assert len(batches) == sum(-(-n // 4) for n in sizes)  # only each group's last batch is padded
    assert sampler.epoch_batches(0) != sampler.epoch_batches(1)


def test_grouped_sampler_is_deterministic_and_resumable():
    full = list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=5), 40))  # > 3 epochs
    assert full == list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=5), 40))
    assert full != list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=6), 40))
    for start in (1, 10, 11, 25):
        resumed = list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=5, start_iter=start), 40 - start))
        assert resumed == full[start:]
    seeds = [s for b in full[:10] for _, s in b]
    assert len(set(seeds)) > 30  # per-sample seeds differ


def test_grouped_sampler_rank_shards_partition_each_epoch():
    shards = [GroupedBatchSampler(GROUPS, 2, seed=0, rank=r, world_size=3).epoch_batches(0) for r in range(3)]
    seen = [{i for b in batches for i, _ in b} for batches in shards]
    assert set().union(*seen) == set(range(37))
    assert all(not (seen[a] & seen[b]) for a, b in [(0, 1), (0, 2), (1, 2)])


def test_train_loader_batches_resume_and_do_not_depend_on_workers(tiny_shapes_cfg):
    cfg = tiny_shapes_cfg(min_size=[48, 64], flip_prob=0.5)
    loader = build_train_loader(cfg, batch_size=2, seed=0, num_workers=0)
    first = list(itertools.islice(loader, 8))
    batch = first[0]
    assert batch.images.shape[0] == 2 and batch.images.shape[2] % 32 == 0 and batch.images.shape[3] % 32 == 0
    assert all(h <= batch.images.shape[2] and w <= batch.images.shape[3] for h, w in batch.image_sizes)
    for b in first:  # aspect-ratio grouped
        ratios = [loader.dataset.aspect_ratios[i] >= 1 for i in b.indices]
        assert len(set(ratios)) == 1
    resumed = next(iter(build_train_loader(cfg, batch_size=2, seed=0, start_iter=5, num_workers=0)))
    assert resumed.indices == first[5].indices and torch.equal(resumed.images, first[5].images)
    workers = list(itertools.islice(build_train_loader(cfg, batch_size=2, seed=0, num_workers=2), 8))
    for a, b in zip(first, workers):
        assert torch.equal(a.images, b.images)
        assert all(torch.equal(ta["boxes"], tb["boxes"]) for ta, tb in zip(a.targets, b.targets))


@pytest.mark.parametrize("rank", [0, 1])
def test_test_loader_dataset_order_and_rank_split(tiny_shapes_cfg, monkeypatch, rank):
    cfg = tiny_shapes_cfg()
    single = [i for b in build_test_loader(cfg, batch_size=4, num_workers=0) for i in b.indices]
    assert single == list(range(6))
    monkeypatch.setattr("frcnn.data.batching.get_rank", lambda: rank)
    monkeypatch.setattr("frcnn.data.batching.get_world_size", lambda: 2)
    batches = list(build_test_loader(cfg, batch_size=2, num_workers=0))
    assert [i for b in batches for i in b.indices] == list(range(rank, 6, 2))
    assert batches[0].image_ids[0] == f"test_{rank:06d}"


def test_a_batch_larger_than_the_dataset_is_refused_before_decoding(tiny_shapes_cfg, monkeypatch):
    """train.batch_size=100000 on 12 images used to decode for minutes, then fail allocating 7 GB."""
    monkeypatch.setattr("frcnn.data.dataset.read_image_checked", lambda *a: pytest.fail("decoded an image"))
    with pytest.raises(ValueError, match="train.batch_size=100000 is larger than the 12 training images of shapes"):
        build_train_loader(tiny_shapes_cfg(), batch_size=100000, seed=0)
