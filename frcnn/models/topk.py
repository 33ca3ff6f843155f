"""Top-k with a fixed order among equal values, so that eager PyTorch and ONNX Runtime rank alike.

``torch.topk`` leaves the order of equal values, and which of them make the cut, unspecified
(in practice it depends on the row length); ONNX ``TopK`` puts the lower index first. Equal
scores are common enough to matter: the zero padding of a batch gives identical features, and
so identical logits, at many cells. :func:`top_k` gives ONNX's order in both: it ranks float64
keys that are all different and ordered as (value, then lower index), so that nothing is left
to the implementation.
"""

import torch

_TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32
_LARGEST = torch.finfo(torch.float32).max
# Infinite scores become float64 numbers beyond every float32, so that they get ordered keys too.
_BEYOND = 2.0 * _LARGEST


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest of each row of ``scores [B, N]`` (float32, ``k <= N < 2^21``), by
    decreasing value, equal values by increasing index: ``values [B, k]``, ``indices [B, k]``.

    The key of ``s`` at index ``i`` is ``s - m * i * 2^-47`` in float64 with ``m`` = ``|s|`` clamped
    to [tiny, float32's largest]
    (infinities taken as twice float32's largest number): float32 neighbours differ by at least
    ``|s| * 2^-24`` (or ``2^-149``), more than the index term (at most ``m * 2^-26``) can bridge,
    and each key is exact to well within the ``m * 2^-47`` between successive indices.
    """
    index = torch.cumsum(torch.ones_like(scores, dtype=torch.float64), dim=1) - 1  # (B, N); traced: a dynamic N
    values = scores.double().clamp(-_BEYOND, _BEYOND)
    # m stays finite where a runtime computes these float64 keys in float32 (OpenVINO's CPU plugin):
    # there an infinite score stays infinite, and inf * 0 would make its key a NaN that outranks all.
    keys = values - values.abs().clamp(min=_TINY, max=_LARGEST) * index * 2.0**-47
    indices = keys.topk(k, dim=1).indices
    return torch.gather(scores, 1, indices), indices
