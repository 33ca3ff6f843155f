"""Top-k with equal values ranked by index: against a stable sort, at the edges of float32."""

import pytest
import torch

from frcnn.models.topk import top_k

FLOAT32 = torch.finfo(torch.float32)


def stable_top_k(scores, k):
    values, indices = scores.sort(dim=1, descending=True, stable=True)
    return values[:, :k], indices[:, :k]


@pytest.mark.parametrize("scale", [1e-40, 1e-3, 1.0, 1e30])
def test_top_k_ranks_equal_values_by_index(scale):
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(-4, 5, (3, 500), generator=generator).float() * scale  # many ties, subnormal at 1e-40
    scores[:, ::7] = 0.0
    scores[:, 1::11] = float("-inf")
    scores[:, 2::13] = float("inf")
    scores[0, 3::17] = FLOAT32.max
    scores[1, 3::17] = -FLOAT32.max
    scores[2, 3::17] = FLOAT32.smallest_normal / 2**23  # the smallest subnormal
    for k in (1, 37, 500):
        values, indices = top_k(scores, k)
        expected_values, expected_indices = stable_top_k(scores, k)
        assert torch.equal(indices, expected_indices) and torch.equal(values, expected_values)


def test_top_k_separates_neighbouring_floats_across_a_long_row():
    one = torch.tensor([1.0])
    below = torch.nextafter(one, torch.tensor([0.0]))
    scores = torch.cat([below.expand(2**21 - 2), one])[None]  # the largest value last
    assert top_k(scores, 3)[1].tolist() == [[2**21 - 2, 0, 1]]
