"""What a checkpoint holds: :class:`Checkpoint`, the one definition of the format.

On disk a checkpoint is a ``torch.save`` dict with these keys (:meth:`Checkpoint.to_dict`)::

    model          the detector's state dict (frcnn key names)
    iteration      completed optimiser steps when it was taken
    config         the resolved train config (plain dicts and lists; its ``model`` and ``dataset``
                   nodes rebuild the detector and its test-time preprocessing)
    class_names    the K class names; label k (1..K) is class_names[k - 1]
    category_ids   the dataset id written for each label (COCO ids; 1..K for VOC)
    best_metric    the best value of train.best_metric so far (None before any evaluation)
    ema            only from a run with ``train.ema_decay`` > 0, in all its checkpoints (``best.pt``
                   too): the exponential moving average of the weights, ``{"model": its state dict
                   (frcnn key names), "updates": how many updates it averaged}``; what inference
                   loads (:meth:`Checkpoint.for_inference`)
    optimizer, scheduler, scaler, rng
                   the training state (``rng``: one RNG state per process), only in what a run
                   resumes from: ``last.pt`` and the periodic ``model_XXXXXXX.pt``
    checksum       ``sha256:<hex>`` of every tensor above (:func:`tensors_checksum`), written by
                   :func:`frcnn.checkpoint.io.save_checkpoint` and verified on load (files written
                   before it existed have none and load unchecked)

``best.pt`` holds the weights to deploy without the training state (about half the size; it
cannot be resumed). Everything in it is a tensor, a number, a string or a container of those,
so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

import torch

# The keys every checkpoint holds, in the order a message lists the missing ones.
REQUIRED_KEYS = ("model", "config", "class_names", "category_ids", "iteration")
# The nodes of ``config`` a checkpoint is rebuilt from.
CONFIG_NODES = ("model", "dataset")
CHECKSUM_KEY = "checksum"


def _tensors(node: Any, name: str = "") -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor in nested dicts, lists and tuples, in their own order (a
    dict keeps its insertion order through torch.save and torch.load)."""
    if isinstance(node, torch.Tensor):
        return [(name, node)]
    if isinstance(node, Mapping):
        return [item for key, value in node.items() for item in _tensors(value, f"{name}/{key}")]
    if isinstance(node, (list, tuple)):
        return [item for i, value in enumerate(node) for item in _tensors(value, f"{name}/{i}")]
    return []


def tensors_checksum(state: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` over the name, dtype, shape and bytes of every tensor of a checkpoint dict."""
    digest = hashlib.sha256()
    for name, tensor in _tensors(state):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(memoryview(data.view(torch.uint8).numpy()))
    return f"sha256:{digest.hexdigest()}"


def tensor_bytes(state: Mapping[str, Any]) -> int:
    """Bytes of tensor data in a checkpoint dict: about the size of its file."""
    return sum(tensor.numel() * tensor.element_size() for _, tensor in _tensors(state))


class CheckpointError(ValueError):
    """A file given as a checkpoint or weights cannot be read or is not an frcnn checkpoint."""


@dataclass
class TrainingState:
    """What resuming needs beyond the weights: the state dicts of the optimiser, the LR scheduler
    and the loss scaler, and the RNG state of every process (a list, one per rank)."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: list[dict[str, Any]]


TRAINING_KEYS = tuple(f.name for f in fields(TrainingState))


@dataclass
class EmaWeights:
    """The exponential moving average of a run's weights (:mod:`frcnn.engine.ema`): the averaged
    detector's state dict and the number of updates it holds (resuming continues the count)."""

    model: dict[str, torch.Tensor]
    updates: int


@dataclass
class Checkpoint:
    """A trained detector with what rebuilds it (see the module docstring for each field);
    ``training`` is None for weights only (``best.pt``, a torchvision detector)."""

    model: dict[str, torch.Tensor]
    config: dict[str, Any]
    class_names: list[str]
    category_ids: list[int]
    iteration: int = 0
    best_metric: Optional[float] = None
    training: Optional[TrainingState] = field(default=None, repr=False)
    ema: Optional[EmaWeights] = field(default=None, repr=False)

    def weights_only(self) -> Checkpoint:
        """This checkpoint without the training state (what ``best.pt`` holds; the EMA stays)."""
        return replace(self, training=None)

    def for_inference(self) -> Checkpoint:
        """This checkpoint with the weights inference runs as its ``model``: the EMA's when it
        holds one, else its own (a checkpoint without an EMA is returned as it is)."""
        return self if self.ema is None else replace(self, model=self.ema.model, ema=None)

    def to_dict(self) -> dict[str, Any]:
        """The ``torch.save`` dict (flat keys, as listed in the module docstring)."""
        state = {"model": self.model, "iteration": self.iteration, "config": self.config,
                 "class_names": list(self.class_names), "category_ids": list(self.category_ids),
                 "best_metric": self.best_metric}  # fmt: skip
        if self.training is not None:
            state.update({key: getattr(self.training, key) for key in TRAINING_KEYS})
        if self.ema is not None:
            state["ema"] = {"model": self.ema.model, "updates": self.ema.updates}
        return state

    @classmethod
    def from_dict(cls, state: Any, source: str | os.PathLike = "the checkpoint") -> Checkpoint:
        """Read a ``torch.save`` dict; raise :class:`CheckpointError`, one line naming ``source``
        and the missing key, when it is not a checkpoint."""
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"{source} is not an frcnn checkpoint (it holds a {type(state).__name__}, not a dict)"
            )
        missing = [key for key in REQUIRED_KEYS if key not in state]
        if missing:
            raise CheckpointError(
                f"{source} lacks {', '.join(missing)}: not an frcnn checkpoint (the checkpoints/*.pt of a training run)"
            )
        if not _is_state_dict(state["model"]):
            raise CheckpointError(f"{source} is not an frcnn checkpoint: its 'model' entry is not a state dict")
        ema = state.get("ema")
        if ema is not None and not (
            isinstance(ema, Mapping) and _is_state_dict(ema.get("model")) and isinstance(ema.get("updates"), int)
        ):
            raise CheckpointError(
                f"{source} is not an frcnn checkpoint: its 'ema' entry is not "
                "{'model': a state dict, 'updates': a count}"
            )
        config = state["config"]
        missing = [f"config.{node}" for node in CONFIG_NODES if not isinstance(config, Mapping) or node not in config]
        resumable = any(key in state for key in TRAINING_KEYS)  # a training state is whole or absent
        missing += [key for key in TRAINING_KEYS if key not in state] if resumable else []
        if missing:
            raise CheckpointError(f"{source} lacks {', '.join(missing)}: an incomplete frcnn checkpoint")
        training = TrainingState(**{key: state[key] for key in TRAINING_KEYS}) if resumable else None
        return cls(
            model=dict(state["model"]),
            config=dict(config),
            class_names=list(state["class_names"]),
            category_ids=list(state["category_ids"]),
            iteration=int(state["iteration"]),
            best_metric=state.get("best_metric"),
            training=training,
            ema=EmaWeights(model=dict(ema["model"]), updates=ema["updates"]) if ema is not None else None,
        )


def _is_state_dict(node: Any) -> bool:
    return isinstance(node, Mapping) and all(isinstance(v, torch.Tensor) for v in node.values())
