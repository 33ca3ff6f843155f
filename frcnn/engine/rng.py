"""Seeding and the random-number-generator state saved in checkpoints.

The states are stored as plain numbers, lists and uint8 tensors so that checkpoints load with
``torch.load(weights_only=True)``.
"""

import logging
import os
import random
from typing import Any

import numpy as np
import torch

from frcnn.utils.dist import get_rank, get_world_size

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (every device).

    With ``deterministic``, torch is asked for deterministic kernels (CUDA then needs the
    cuBLAS workspace setting below); CPU kernels are deterministic for a fixed thread count.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def get_rng_state() -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def restore_rng_states(states: list[dict[str, Any]], seed: int, iteration: int) -> None:
    """Set this rank's RNG state from a checkpoint's per-rank list; reseed (``seed + rank +
    iteration``) when the checkpoint was taken by another number of processes."""
    rank, world_size = get_rank(), get_world_size()
    if len(states) == world_size:
        set_rng_state(states[rank])
    else:
        log.warning(
            "the checkpoint holds the RNG states of %d processes, this run has %d: reseeding "
            "(the losses will not repeat the original run's)",
            len(states),
            world_size,
        )
        seed_everything(seed + rank + iteration)
