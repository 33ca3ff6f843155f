"""A run folder has one owner: the training that holds its lock.

A training takes ``RUN/.frcnn.lock`` for its lifetime (rank 0 of a torchrun launch, the one
that writes the folder) and gives it back on any exit: :class:`RunFolderLock`, the folder lock
of :mod:`frcnn.utils.folder_lock` (which names its holder, and is taken over when its holder is
gone) with a training's messages.

A new training (no ``train.resume``) in a folder that already holds a run's checkpoints stops
too, unless ``train.overwrite=true``: re-running a command must not replace a trained model.

:func:`own_run_folder` does both for a training, under torchrun too: rank 0 takes the lock and
checks the folder, and every rank raises the same error when it cannot (so that none waits for
the others in a collective).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from frcnn.utils.dist import broadcast_object, is_main_process
from frcnn.utils.folder_lock import LOCK_FILE, FolderLock

log = logging.getLogger(__name__)

__all__ = ["LOCK_FILE", "RUN_FILES", "RunFolderError", "RunFolderLock", "check_fresh_start", "own_run_folder"]


class RunFolderError(RuntimeError):
    """The run folder is in use by another training, or holds a run that this one would replace."""


class RunFolderLock(FolderLock):
    """The exclusive lock of a run folder; a context manager (``with RunFolderLock(run_dir): ...``)
    whose refusal is a :class:`RunFolderError` naming the holder."""

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__(run_dir, holder="training", elsewhere="hydra.run.dir", error=RunFolderError)


# What a training run leaves in its folder that a new run in the same folder would mix with its own.
RUN_FILES = ("losses.jsonl", "metrics.json")


def check_fresh_start(run_dir: str | os.PathLike, resume: Optional[str], overwrite: bool) -> None:
    """Raise :class:`RunFolderError` when a new training (``resume`` None) would start in a folder
    that already holds a run's checkpoints; with ``overwrite`` delete that run's checkpoints,
    losses and metrics instead (saying so), so that nothing of it is mixed with the new run's."""
    checkpoints = Path(run_dir) / "checkpoints"
    found = sorted(p.name for p in checkpoints.glob("*.pt")) if checkpoints.is_dir() else []
    if resume is not None or not found:
        return
    if overwrite:
        for name in found:
            (checkpoints / name).unlink()
        for name in RUN_FILES:
            (Path(run_dir) / name).unlink(missing_ok=True)
        log.warning(
            "train.overwrite=true: deleted the earlier run's %s and %s in %s",
            ", ".join(found),
            " and ".join(RUN_FILES),
            run_dir,
        )
        return
    raise RunFolderError(
        f"{run_dir} already holds a training run ({', '.join(found)} in {checkpoints}): continue it with "
        f"train.resume=auto, choose another hydra.run.dir, or pass train.overwrite=true to start over in it"
    )


@contextmanager
def own_run_folder(run_dir: str | os.PathLike, resume: Optional[str], overwrite: bool) -> Iterator[None]:
    """Hold ``run_dir``'s lock (rank 0) for the ``with`` block, after :func:`check_fresh_start`;
    every process raises the :class:`RunFolderError` when the folder is in use or holds another
    run. Call before anything is written to the folder (or removed from it)."""
    lock = RunFolderLock(run_dir) if is_main_process() else None
    refusal = None
    if lock is not None:
        try:
            lock.acquire()
            check_fresh_start(run_dir, resume, overwrite)
        except RunFolderError as error:
            lock.release()
            refusal = str(error)
    refusal = broadcast_object(refusal)
    if refusal is not None:
        raise RunFolderError(refusal)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
