"""Repeat-factor sampling (dataset.sampler=repeat_factor): the factors, their rates, and the grouped sampler's
determinism, resume and rank shards with repeated indices; the uniform sampler's stream unchanged."""

import itertools
import logging
import math
from collections import Counter

import numpy as np
import pytest

from frcnn.data import GroupedBatchSampler, build_train_loader
from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.config import DatasetConfig, Sampler
from frcnn.data.sampling import class_image_fractions, repeat_factors, repeated_indices

# 20 images, each a list of objects (label, difficult, crowd). With t = 0.8:
# label 1 in 16 images: f = 0.8, r = 1; label 2 in 4 (image 0 holds three): f = 0.2, r = sqrt(0.8 / 0.2) = 2;
# label 3 in 1: f = 0.05, r = 4; label 4 in 5: f = 0.25, r = sqrt(3.2); label 5 only as a crowd object (never
# counts); label 6 only as a difficult one (counts with use_difficult: f = 0.05, r = 4). Image 19 is empty.
IMAGES = [
    [(1, 0, 0), (2, 0, 0), (2, 0, 0), (2, 0, 0)], [(1, 0, 0), (2, 0, 0)], [(1, 0, 0), (2, 0, 0)],
    [(2, 0, 0), (3, 0, 0)], [(1, 0, 0), (4, 0, 0)], [(1, 0, 0), (4, 0, 0)], [(4, 0, 0)], [(1, 0, 0), (4, 0, 0)],
    [(4, 0, 0), (1, 0, 0)], [(1, 0, 0), (5, 0, 1)], [(6, 1, 0)], *[[(1, 0, 0)]] * 8, [],
]  # fmt: skip
THRESHOLD = 0.8
S = math.sqrt(3.2)
EXPECTED = [2, 2, 2, 4, S, S, S, S, S, 1, 4, *[1] * 8, 1]


def _index(images=IMAGES) -> AnnotationIndex:
    objects = [obj for image in images for obj in image]
    n = len(images)
    return AnnotationIndex.build(
        image_ids=[f"img{i}" for i in range(n)], image_dirs=["."], dir_index=[0] * n,
        file_names=[f"img{i}.jpg" for i in range(n)], heights=[100] * n, widths=[100 + 50 * (i % 2) for i in range(n)],
        boxes_per_image=[len(image) for image in images], boxes=[[0, 0, 10, 10]] * len(objects),
        labels=[o[0] for o in objects], difficult=[o[1] for o in objects], iscrowd=[o[2] for o in objects],
        object_ids=range(len(objects)),
    )  # fmt: skip


def test_class_fractions_count_each_image_once():
    fractions = class_image_fractions(_index())
    assert fractions.tolist() == pytest.approx([0, 16 / 20, 4 / 20, 1 / 20, 5 / 20, 1 / 20, 1 / 20])


def test_repeat_factors_follow_the_lvis_rule():
    assert repeat_factors(_index(), THRESHOLD).tolist() == pytest.approx(EXPECTED)
    # difficult objects are left out of training without use_difficult: label 6 then repeats nothing
    without_difficult = repeat_factors(_index(), THRESHOLD, use_difficult=False)
    assert without_difficult.tolist() == pytest.approx(EXPECTED[:10] + [1] + EXPECTED[11:])
    # a threshold every class's frequency reaches repeats nothing; a higher one repeats more
    assert repeat_factors(_index(), 0.05).tolist() == [1.0] * 20
    assert repeat_factors(_index(), 1.0)[3] == pytest.approx(math.sqrt(20))
    assert repeat_factors(_index([[], []]), 0.5).tolist() == [1.0, 1.0]  # no objects at all
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        repeat_factors(_index(), 0.0)


def test_rare_class_images_are_drawn_at_the_rules_rate():
    factors = repeat_factors(_index(), THRESHOLD)
    sampler = GroupedBatchSampler(np.zeros(20, dtype=int), batch_size=4, seed=7, repeat_factors=factors)
    epochs = 4000
    per_epoch = np.array([np.bincount(sampler.epoch_samples(e)[0], minlength=20) for e in range(epochs)])
    # stochastic rounding: floor(r) or floor(r) + 1 copies every epoch, r on average; over 4000 epochs the
    # mean of a 0/1 draw of p = frac(r) has a standard deviation below 0.008: 0.04 is over 5 of them
    assert ((per_epoch == np.floor(factors)) | (per_epoch == np.floor(factors) + 1)).all()
    assert per_epoch.mean(axis=0) == pytest.approx(factors, abs=0.04)
    assert (per_epoch[:, [0, 1, 2, 3, 10]] == [2, 2, 2, 4, 4]).all()  # whole factors: exactly r copies
    assert per_epoch.sum(axis=1).mean() == pytest.approx(factors.sum(), abs=0.1)


def test_repeated_indices_round_stochastically_in_index_order():
    rng = np.random.default_rng(0)
    draws = [repeated_indices(np.array([1.0, 2.5, 1.0, 3.0]), rng) for _ in range(200)]
    assert all(np.all(np.diff(d) >= 0) for d in draws)
    counts = Counter(int((d == 1).sum()) for d in draws)
    assert set(counts) == {2, 3} and 70 < counts[3] < 130
    assert all((d == 3).sum() == 3 and (d == 0).sum() == 1 for d in draws)


GROUPS = np.random.default_rng(0).integers(0, 2, size=37)
FACTORS = np.where(np.arange(37) % 5 == 0, 2.6, 1.0)


def test_repeat_factor_sampler_is_deterministic_per_seed():
    full = list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=5, repeat_factors=FACTORS), 60))
    assert full == list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=5, repeat_factors=FACTORS), 60))
    assert full != list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=6, repeat_factors=FACTORS), 60))
    sampler = GroupedBatchSampler(GROUPS, 4, seed=5, repeat_factors=FACTORS)
    assert len(sampler.epoch_samples(0)[0]) != len(sampler.epoch_samples(1)[0])  # the epoch's length varies


def test_repeat_factor_batches_are_grouped_and_hold_the_repeats():
    sampler = GroupedBatchSampler(GROUPS, batch_size=4, seed=1, repeat_factors=FACTORS)
    for epoch in range(3):
        order, _ = sampler.epoch_samples(epoch)
        batches = sampler.epoch_batches(epoch)
        assert all(len(b) == 4 and len({GROUPS[i] for i, _ in b}) == 1 for b in batches)
        drawn = Counter(order.tolist())
        batched = Counter(i for b in batches for i, _ in b)
        assert set(batched) == set(range(37)) and all(batched[i] >= drawn[i] for i in drawn)
        assert len(batches) == sum(-(-n // 4) for n in np.bincount(GROUPS[order]))  # only last batches padded


@pytest.mark.parametrize("start", [1, 9, 10, 23, 41])
def test_repeat_factor_sampler_resumes_exactly(start):
    full = list(itertools.islice(GroupedBatchSampler(GROUPS, 4, seed=5, repeat_factors=FACTORS), 60))
    resumed = GroupedBatchSampler(GROUPS, 4, seed=5, start_iter=start, repeat_factors=FACTORS)
    assert list(itertools.islice(resumed, 60 - start)) == full[start:]  # across epochs of different lengths


def test_repeat_factor_rank_shards_partition_the_epoch():
    world = 3
    samplers = [GroupedBatchSampler(GROUPS, 2, seed=0, rank=r, world_size=world, repeat_factors=FACTORS)
                for r in range(world)]  # fmt: skip
    order, seeds = samplers[0].epoch_samples(0)
    epoch = list(zip(order.tolist(), seeds.tolist()))
    assert len(set(epoch)) == len(epoch)  # (index, sample seed) names one entry of the epoch's list
    shards = [{s for b in sampler.epoch_batches(0) for s in b} for sampler in samplers]
    assert all(not (shards[a] & shards[b]) for a, b in itertools.combinations(range(world), 2))
    assert set().union(*shards) == set(epoch)
    assert all(shards[r] == set(epoch[r::world]) for r in range(world))


def test_uniform_stream_is_unchanged():
    """The uniform sampler's batches as they were before repeat-factor sampling (recorded at commit 295cbb0)."""
    sampler = GroupedBatchSampler(GROUPS, 4, seed=3, rank=1, world_size=2)
    assert list(itertools.islice(sampler, 3)) == [
        [(17, 1423060237), (22, 525437299), (35, 408758457), (21, 1018936729)],
        [(36, 299072408), (31, 92561587), (24, 546351935), (20, 1306965658)],
        [(33, 1116052370), (30, 544698542), (18, 1306001769), (1, 532409422)],
    ]
    assert GroupedBatchSampler(GROUPS, 4, seed=3).epoch_batches(2)[:2] == [
        [(1, 550657340), (22, 1413468339), (21, 494146288), (35, 580162517)],
        [(18, 1516194558), (19, 123484727), (25, 2009995554), (33, 1003759853)],
    ]
    # ...and the draw it was made from: one permutation of the N indices, then N sample seeds
    for seed, epoch in itertools.product((0, 3, 11), (0, 1, 5)):
        rng = np.random.default_rng([seed, epoch])
        order, seeds = GroupedBatchSampler(GROUPS, 4, seed=seed).epoch_samples(epoch)
        assert order.tolist() == rng.permutation(37).tolist()
        assert seeds.tolist() == rng.integers(0, 2**31 - 1, size=37).tolist()


def test_the_sampler_defaults_to_uniform():
    assert DatasetConfig().sampler is Sampler.uniform and DatasetConfig().repeat_threshold == 0.001


def test_repeat_factor_sampler_factors_must_fit_the_dataset():
    with pytest.raises(ValueError, match="one repeat factor >= 1 for each of the 37"):
        GroupedBatchSampler(GROUPS, 4, repeat_factors=FACTORS[:-1])
    with pytest.raises(ValueError, match="one repeat factor >= 1"):
        GroupedBatchSampler(GROUPS, 4, repeat_factors=np.full(37, 0.5))


def test_the_train_loader_samples_by_repeat_factor_and_logs_it(tiny_shapes_cfg, monkeypatch, caplog):
    monkeypatch.setattr("frcnn.data.dataset.read_image_checked", lambda *a: pytest.fail("decoded an image"))
    plain = build_train_loader(tiny_shapes_cfg(), batch_size=2, seed=0, num_workers=0)
    assert plain.batch_sampler.repeat_factors is None
    cfg = tiny_shapes_cfg(sampler="repeat_factor", repeat_threshold=1.0)
    with caplog.at_level(logging.INFO, logger="frcnn.data.sampling"):
        loader = build_train_loader(cfg, batch_size=2, seed=0, num_workers=0)
    factors = loader.batch_sampler.repeat_factors
    assert factors.tolist() == repeat_factors(loader.dataset.index, 1.0).tolist() and (factors > 1).any()
    repeated = int((factors > 1).sum())
    assert f"(threshold 1): {repeated} of {len(factors)} training images repeated, mean repeat factor " in caplog.text
    full = list(itertools.islice(loader.batch_sampler, 20))
    resumed = build_train_loader(cfg, batch_size=2, seed=0, start_iter=7, num_workers=0).batch_sampler
    assert list(itertools.islice(resumed, 13)) == full[7:]
