"""Non-finite numbers in saved or trained state: finding them by name, and the error that reports them.

A training state is a nested container (dicts, lists, tuples) of tensors; a tensor's name is
its dotted path in it (``model.roi_head.score.weight``, ``optimizer.state.3.exp_avg``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch


class DivergenceError(FloatingPointError):
    """Training produced non-finite numbers; the message names the iteration, the loss terms and
    the gradient norm (or the tensors that hold them)."""


def _named_tensors(node: Any, prefix: str) -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(node, torch.Tensor):
        yield prefix, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _named_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _named_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def nonfinite_tensors(state: Any) -> list[str]:
    """Dotted names (``model.roi_head.score.weight``, ``optimizer.state.3.exp_avg``) of the
    floating-point tensors anywhere in ``state`` (nested dicts, lists, tuples) holding a NaN or
    an infinity. One device synchronisation per device."""
    named = [(name, t) for name, t in _named_tensors(state, "") if t.is_floating_point() or t.is_complex()]
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    bad = []
    for rows in by_device.values():
        # A sum is NaN or inf when an element is: one fast reduction per tensor (a separate
        # isfinite pass over every weight and optimiser state costs ~10% of a small model's step).
        # A finite sum that overflows is possible in low precision, so suspects are confirmed.
        sums = torch.stack([_sum(named[i][1]) for i in rows])
        suspects = [i for i, ok in zip(rows, torch.isfinite(sums).tolist()) if not ok]
        bad += [i for i in suspects if not torch.isfinite(named[i][1]).all()]
    return [named[i][0] for i in sorted(bad)]


def name_list(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``names`` joined by commas, then ``and N more`` for the rest."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of every element, accumulated in at least float32 (complex: of the real and imaginary parts)."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor.sum(dtype=torch.float64 if tensor.dtype == torch.float64 else torch.float32)
