"""Rank helpers and collectives that work alike in one process and under torchrun.

Without an initialised process group every helper gives the single-process answer (rank 0 of
1, the value itself). Each collective run through here is counted in the rendezvous store
(:data:`collectives`, set up by :func:`frcnn.engine.distributed.init_distributed`), so that a
process that times out can name the ranks that fell behind.
"""

from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

PROGRESS_KEY = "frcnn/collectives/{rank}"


class CollectiveCount:
    """How many collectives this process has entered, mirrored in the rendezvous store."""

    def __init__(self):
        self.count = 0
        self.store: Optional[dist.Store] = None
        self.timeout_s = 0.0

    def enter(self) -> None:
        if self.store is None:
            return
        self.count += 1
        self.store.set(PROGRESS_KEY.format(rank=get_rank()), str(self.count))


collectives = CollectiveCount()


def mark_collective() -> None:
    """Record that this process enters a collective the helpers here do not run (DDP's
    gradient all-reduce in the backward pass)."""
    collectives.enter()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        collectives.enter()
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (any shape) over all processes; the input itself is not modified."""
    if not is_distributed():
        return values
    values = values.clone()
    collectives.enter()
    dist.all_reduce(values)
    return values / get_world_size()


def all_reduce_any(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any one of them."""
    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=device)
    collectives.enter()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_object(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not is_distributed():
        return [obj]
    gathered = [None] * get_world_size()
    collectives.enter()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every process (the others pass anything, e.g. None)."""
    if not is_distributed():
        return obj
    holder = [obj]
    collectives.enter()
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every process.

    DDP does this at the start of each forward; after the last training step the ranks'
    buffers still differ (each updated them on its own batch), so evaluation calls this first.
    """
    if is_distributed():
        collectives.enter()
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)
