"""torch.distributed set-up for torchrun launches, and naming the rank that stalled a run.

``torchrun`` (single node or ``--nnodes`` / ``--rdzv_endpoint``) exports RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without them the process runs alone and every helper
of :mod:`frcnn.utils.dist` degrades to the single-process answer.

A process that stops responding (hung, stopped, swapped out) would hold the others in their
next collective until the timeout of the process group. That timeout is ``train.dist_timeout``
(default :data:`DEFAULT_TIMEOUT_S`), and every process records in the rendezvous store how many
collectives it has entered, so that one that times out names the ranks that fell behind
(:func:`stalled_rank_error`).
"""

import ctypes
import hashlib
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from frcnn.utils.dist import PROGRESS_KEY, all_gather_object, collectives, get_rank, get_world_size, is_distributed

log = logging.getLogger(__name__)

# Seconds a collective may wait for the other processes: a CPU run's steps and evaluations are
# short; a GPU run's rank 0 may evaluate COCO or write large checkpoints while the others wait.
DEFAULT_TIMEOUT_S = {"gloo": 300.0, "nccl": 1800.0}


class StalledRankError(TimeoutError):
    """A collective timed out; the message names the ranks that fell behind."""


def stop_with_launcher() -> None:
    """Under torchrun on Linux, have the kernel send this process SIGTERM when torchrun dies.

    torchrun stops its workers when it is stopped itself, but a killed (SIGKILL) torchrun cannot:
    its workers would train on as orphans. With this, they stop as on Ctrl-C (save, exit).
    """
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() == 1:  # the launcher died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def init_distributed(device: torch.device, timeout_s: Optional[float] = None) -> torch.device:
    """Join the process group when launched by torchrun; return the device of this process.

    CUDA processes use nccl and the GPU ``LOCAL_RANK`` of their node; CPU processes use gloo.
    ``timeout_s``: how long a collective waits for the other processes (None:
    :data:`DEFAULT_TIMEOUT_S` of the backend).
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        return device
    stop_with_launcher()
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout_s = DEFAULT_TIMEOUT_S[backend] if timeout_s is None else float(timeout_s)
    dist.init_process_group(
        backend, timeout=timedelta(seconds=timeout_s), device_id=device if device.type == "cuda" else None
    )
    # A client of the rendezvous store (torchrun's agent, or rank 0) for the progress records.
    collectives.store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timedelta(seconds=min(timeout_s, 30.0)),
    )
    collectives.count, collectives.timeout_s = 0, timeout_s
    log.info(
        "process group: backend %s, rank %d of %d, collective timeout %g s",
        backend,
        get_rank(),
        get_world_size(),
        timeout_s,
    )
    return device


def shared_run_dir(run_dir: Path) -> Path:
    """Rank 0's run directory, on every rank.

    Each torchrun process composes its own config, and Hydra's time-stamped run directories
    differ by microseconds; all ranks adopt rank 0's (a multi-node resume needs it on a shared
    file system), and a rank's own directory is removed if it is empty.
    """
    shared = Path(all_gather_object(str(run_dir))[0])
    if shared != run_dir and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    return shared


def destroy_distributed() -> None:
    collectives.store = None
    if dist.is_initialized():
        dist.destroy_process_group()


def _is_peer_failure(error: BaseException) -> bool:
    """A collective that timed out or lost its connection to another process."""
    text = str(error).lower()
    return any(phrase in text for phrase in ("timed out", "timeout", "connection closed", "connection reset"))


def stalled_rank_error(error: BaseException) -> Optional[StalledRankError]:
    """For an ``error`` raised by a collective that timed out (or lost a peer): a
    :class:`StalledRankError` naming the ranks that entered fewer collectives than this one;
    None for any other error."""
    if not is_distributed() or collectives.store is None or not _is_peer_failure(error):
        return None
    rank, world_size = get_rank(), get_world_size()
    cause = str(error).splitlines()[0] if str(error) else type(error).__name__
    try:
        counts = {}
        for other in range(world_size):
            key = PROGRESS_KEY.format(rank=other)
            counts[other] = int(collectives.store.get(key)) if collectives.store.check([key]) else 0
    except (RuntimeError, ValueError) as store_error:  # the store's host may be the stalled process
        return StalledRankError(
            f"rank {rank} waited {collectives.timeout_s:g} s (train.dist_timeout) in a collective ({cause}); the "
            f"rendezvous store does not answer either ({store_error}), so its host (rank 0 or torchrun) stalled"
        )
    behind = [r for r, count in counts.items() if count < counts[rank]]
    if behind:
        listed = ", ".join(f"{r} ({counts[rank] - counts[r]} behind)" for r in behind)
        return StalledRankError(
            f"rank(s) {listed} stopped responding: rank {rank} waited {collectives.timeout_s:g} s "
            f"(train.dist_timeout) in collective {counts[rank]} ({cause})"
        )
    return StalledRankError(
        f"rank {rank} waited {collectives.timeout_s:g} s (train.dist_timeout) in collective {counts[rank]}, "
        f"which every rank entered ({cause}): a rank stalled inside it"
    )


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
