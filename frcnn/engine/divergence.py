"""Divergence: non-finite losses, gradients and weights, and finite ones that explode, found
before anything is saved.

Every training step measures the total L2 norm of the gradients (``grad_norm``, logged with the
losses) and, after the optimiser step, checks the weights, buffers and optimiser state. What the
loop does with a non-finite loss or gradient follows ``train.on_nonfinite``: ``stop`` (the
default) ends the run, ``skip`` drops the update and carries on, stopping after
``train.max_nonfinite_steps`` dropped steps in a row. Non-finite weights always stop the run: the
update that produced them cannot be taken back.

A loss can also explode and stay finite (``5e19``, a gradient norm of ``1e15``): a step whose total
loss or gradient norm is more than ``train.divergence_factor`` times its median over the last
:data:`SPIKE_WINDOW` in-range steps is a *spike*: its update is dropped (the
gradient that would ruin the weights is never applied) and ``train.divergence_steps`` spikes in a
row stop the run, whatever ``train.on_nonfinite`` says (a single spike, a hard batch, only warns).

The checkpoint writer refuses non-finite tensors (:func:`nonfinite_tensors`), and the loop makes a
written checkpoint ``last.pt`` only once the next step has computed finite, in-range gradients from
its weights, so a diverged run never replaces its last good checkpoint.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Optional

import torch

from frcnn.config.schema import NonFinitePolicy
from frcnn.utils.finite import DivergenceError, name_list, nonfinite_tensors


class NonFiniteLossError(DivergenceError):
    """A loss term became NaN or infinite."""


class LossSpikeError(DivergenceError):
    """A total loss or gradient norm stayed far above its recent median for several steps."""


def describe_step(iteration: int, losses: Mapping[str, float], grad_norm: float | None) -> str:
    """``iteration 7: rpn_cls=0.69, ..., total=nan; grad_norm=inf`` (no norm before the backward pass)."""
    terms = ", ".join(f"{k}={v:.6g}" for k, v in losses.items())
    norm = "not computed (no backward pass)" if grad_norm is None else f"{grad_norm:.6g}"
    return f"iteration {iteration}: {terms}; grad_norm={norm}"


def gradient_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """Total L2 norm of the gradients of ``parameters`` (those without a gradient are left out)
    as a 0-dim tensor; NaN or inf when any gradient is."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.nn.utils.get_total_norm(grads)


def check_weights(
    iteration: int,
    losses: Mapping[str, float],
    grad_norm: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Raise :class:`DivergenceError` when the step just taken left a non-finite weight, buffer or
    optimiser state (e.g. a finite but huge gradient times the learning rate overflowed)."""
    parameters = dict(model.named_parameters())
    state = {name: optimizer.state[p] for name, p in parameters.items() if p in optimizer.state}
    # Buffers too: a forward pass on overflowing activations leaves NaN BatchNorm statistics.
    bad = nonfinite_tensors({"model": {**parameters, **dict(model.named_buffers())}, "optimizer": state})
    if bad:
        raise DivergenceError(
            f"the update of {describe_step(iteration, losses, grad_norm)} made {name_list(bad)} non-finite"
        )


SPIKE_WINDOW = 50  # in-range steps whose median is a spike's reference


class DivergenceGuard:
    """The ``on_nonfinite`` policy's bookkeeping (dropped steps in a row and in total) and the spike
    test: the recent in-range totals and gradient norms, and the spikes in a row.

    ``spike_factor``: a total loss or gradient norm above this many times its median over the last
    :data:`SPIKE_WINDOW` in-range steps is a spike (None: no spike test); ``spike_steps`` spikes in
    a row stop the run.
    """

    def __init__(
        self,
        policy: NonFinitePolicy | str,
        max_in_a_row: int,
        spike_factor: Optional[float] = None,
        spike_steps: int = 3,
    ):
        self.policy = NonFinitePolicy(policy)
        self.max_in_a_row = max_in_a_row
        self.spike_factor = spike_factor
        self.spike_steps = spike_steps
        self.in_a_row = 0
        self.total = 0
        self.spikes_in_a_row = 0
        self.total_spikes = 0
        self.recent = {"loss": deque(maxlen=SPIKE_WINDOW), "grad_norm": deque(maxlen=SPIKE_WINDOW)}

    def finite(self, loss: float, grad_norm: float) -> None:
        """Record an in-range step: it ends the runs of dropped steps and spikes. (A step whose fp16
        loss scaling overflowed has an infinite norm and is kept out of the medians.)"""
        self.in_a_row = 0
        self.spikes_in_a_row = 0
        if math.isfinite(grad_norm):
            self.recent["loss"].append(loss)
            self.recent["grad_norm"].append(grad_norm)

    def spike(self, loss: float, grad_norm: float) -> Optional[str]:
        """Why a step of total ``loss`` and gradient norm ``grad_norm`` is a spike, or None (also
        before any in-range step: there is nothing to compare with)."""
        if self.spike_factor is None:
            return None
        for name, value, recent in (("total loss", loss, self.recent["loss"]),
                                    ("grad_norm", grad_norm, self.recent["grad_norm"])):  # fmt: skip
            if recent and value > self.spike_factor * (median := statistics.median(recent)):
                return (
                    f"{name} {value:.6g} is {value / median:.3g} times its median {median:.6g} over the "
                    f"last {len(recent)} steps (train.divergence_factor={self.spike_factor:g})"
                )
        return None

    def spiked(self, error: DivergenceError) -> None:
        """Record a spike, whose update is dropped (``error`` describes it); raise it when
        ``spike_steps`` came in a row."""
        self.spikes_in_a_row += 1
        self.total_spikes += 1
        if self.spikes_in_a_row >= self.spike_steps:
            raise LossSpikeError(f"{error}; {self.spikes_in_a_row} steps in a row (train.divergence_steps)")

    def nonfinite(self, error: DivergenceError) -> None:
        """Record a non-finite loss or gradient (``error`` describes it): raise it under ``stop``;
        under ``skip`` raise when ``max_in_a_row`` steps in a row have been dropped."""
        if self.policy is NonFinitePolicy.stop:
            raise error
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= self.max_in_a_row:
            raise type(error)(
                f"{error}; {self.in_a_row} steps in a row dropped (train.max_nonfinite_steps={self.max_in_a_row})"
            )
