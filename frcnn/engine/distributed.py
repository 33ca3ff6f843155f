"""torch.distributed set-up for torchrun launches, and rank helpers.

``torchrun`` (single node or ``--nnodes`` / ``--rdzv_endpoint``) exports RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without them the process runs alone and every helper
here degrades to the single-process answer.
"""

import hashlib
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; return the device of this process.

    CUDA processes use nccl and the GPU ``LOCAL_RANK`` of their node; CPU processes use gloo.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=30),
                            device_id=device if device.type == "cuda" else None)
    log.info("process group: backend %s, rank %d of %d", backend, get_rank(), get_world_size())
    return device


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


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
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (any shape) over all processes; the input itself is not modified."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / get_world_size()


def all_reduce_any(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any one of them."""
    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_object(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not is_distributed():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every process.

    DDP does this at the start of each forward; after the last training step the ranks'
    buffers still differ (each updated them on its own batch), so evaluation calls this first.
    """
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def parameter_checksum(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_replicas_in_sync(model: nn.Module) -> str:
    """Verify that every process holds bit-identical weights; return the shared checksum.

    Raises RuntimeError naming the ranks that diverged from rank 0.
    """
    checksums = all_gather_object(parameter_checksum(model))
    diverged = [r for r, c in enumerate(checksums) if c != checksums[0]]
    if diverged:
        raise RuntimeError(f"model replicas diverged from rank 0 on ranks {diverged}: {checksums}")
    log.info("weights identical on all %d processes (sha256 %s)", len(checksums), checksums[0])
    return checksums[0]
