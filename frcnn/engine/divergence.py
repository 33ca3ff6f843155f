"""Divergence: non-finite losses, gradients and weights, found before anything is saved.

Every training step measures the total L2 norm of the gradients (``grad_norm``, logged with the
losses) and, after the optimiser step, checks the weights, buffers and optimiser state. What the
loop does with a non-finite loss or gradient follows ``train.on_nonfinite``: ``stop`` (the
default) ends the run, ``skip`` drops the update and carries on, stopping after
``train.max_nonfinite_steps`` dropped steps in a row. Non-finite weights always stop the run: the
update that produced them cannot be taken back. The checkpoint writer refuses non-finite tensors
(:func:`nonfinite_tensors`), and the loop makes a written checkpoint ``last.pt`` only once the
next step has computed finite gradients from its weights, so a diverged run never replaces its
last good checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from frcnn.config.schema import NonFinitePolicy
from frcnn.utils.finite import DivergenceError, name_list, nonfinite_tensors


class NonFiniteLossError(DivergenceError):
    """A loss term became NaN or infinite."""


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


class NonFiniteSteps:
    """The ``on_nonfinite`` policy's bookkeeping: dropped steps in a row and in total."""

    def __init__(self, policy: NonFinitePolicy | str, max_in_a_row: int):
        self.policy = NonFinitePolicy(policy)
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.total = 0

    def finite(self) -> None:
        self.in_a_row = 0

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
