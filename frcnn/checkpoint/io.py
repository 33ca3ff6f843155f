"""Writing a checkpoint file (atomic, refusing non-finite tensors, with the checksum of its
tensors) and reading one (``torch.load(weights_only=True)``, the checksum verified, or
``torchvision:<name>``); the format is :mod:`frcnn.checkpoint.format`."""

import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from frcnn.checkpoint.format import CHECKSUM_KEY, Checkpoint, CheckpointError, tensor_bytes, tensors_checksum
from frcnn.checkpoint.torchvision import torchvision_checkpoint
from frcnn.models.weights import TORCHVISION_PREFIX
from frcnn.utils.finite import DivergenceError, name_list, nonfinite_tensors

log = logging.getLogger(__name__)


def write_temporary(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` to a temporary file next to ``path`` (flushed to disk) and return it;
    :func:`commit_temporary` renames it over ``path``. Raises :class:`DivergenceError`, writing
    nothing, if any of its tensors holds a NaN or an infinity, and ``OSError(ENOSPC)`` naming
    ``path`` when the disk fills up (removing the partial file)."""
    path = Path(path)
    state = checkpoint.to_dict()
    bad = nonfinite_tensors(state)
    if bad:  # a diverged state never replaces the last good checkpoint
        raise DivergenceError(f"refusing to write {path}: non-finite values in {name_list(bad)}")
    state[CHECKSUM_KEY] = tensors_checksum(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, (RuntimeError, OSError)) and _disk_full(path.parent, tensor_bytes(state)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    return Path(tmp)


def _disk_full(folder: Path, needed: int) -> bool:
    """Whether ``folder``'s file system lacks the ``needed`` bytes: torch.save's zip writer reports
    a full disk only as ``RuntimeError: [enforce fail at inline_container.cc] . unexpected pos``."""
    try:
        return shutil.disk_usage(folder).free < needed
    except OSError:
        return False


def commit_temporary(tmp: Path, path: str | os.PathLike) -> None:
    """Rename ``tmp`` (from :func:`write_temporary`) over ``path``, durably."""
    path = Path(path)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("saved %s (%.1f MB)", path, path.stat().st_size / 2**20)


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> None:
    """Write ``checkpoint`` to ``path`` atomically; raise :class:`DivergenceError` (writing
    nothing) if any of its tensors holds a NaN or an infinity.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path``: a crash or kill at any moment leaves either the previous file or the new one.
    """
    commit_temporary(write_temporary(checkpoint, path), path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint; a missing, truncated, foreign or corrupted file (its tensors do not match
    the checksum it was written with) raises an error naming it (FileNotFoundError,
    :class:`CheckpointError`). Files written before checksums existed load unchecked.

    ``torchvision:<name>`` (e.g. ``torchvision:fasterrcnn_resnet50_fpn``) is torchvision's
    trained detector as a checkpoint (:func:`frcnn.checkpoint.torchvision.torchvision_checkpoint`).
    """
    if str(path).startswith(TORCHVISION_PREFIX):
        return torchvision_checkpoint(str(path))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes; its write was interrupted?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__  # one line, never empty
        raise CheckpointError(
            f"cannot read checkpoint {path} ({reason}): is it a checkpoints/*.pt file of a run?"
        ) from e
    if isinstance(state, dict) and CHECKSUM_KEY in state:
        saved = state.pop(CHECKSUM_KEY)
        if tensors_checksum(state) != saved:
            raise CheckpointError(
                f"checkpoint {path} is corrupted: its tensors do not match the checksum it was "
                f"written with (a damaged disk or copy); use another checkpoint of the run"
            )
    return Checkpoint.from_dict(state, path)
