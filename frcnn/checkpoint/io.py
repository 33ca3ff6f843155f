"""Checkpoints: atomic writes, the run's checkpoint folder, weights-only loading.

A checkpoint is a ``torch.save`` dict (see INTERFACES.md)::

    {"model", "optimizer", "scheduler", "scaler", "iteration", "rng", "config",
     "class_names", "category_ids", "best_metric"}

``best.pt`` holds the weights to deploy only: ``{"model", "iteration", "config", "class_names",
"category_ids", "best_metric"}`` (about half the size: no optimiser state; it cannot be resumed).

Everything in it is a tensor, a number, a string or a container of those, so it loads with
``torch.load(weights_only=True)``.
"""

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from frcnn.checkpoint.torchvision import torchvision_checkpoint
from frcnn.models.weights import TORCHVISION_PREFIX
from frcnn.utils.finite import DivergenceError, name_list, nonfinite_tensors

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
_PERIODIC = re.compile(r"model_(\d+)\.pt")


class CheckpointError(ValueError):
    """A file given as a checkpoint or weights cannot be read or is not an frcnn checkpoint."""


def write_temporary(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to a temporary file next to ``path`` (flushed to disk) and return it;
    :func:`commit_temporary` renames it over ``path``. Raises :class:`DivergenceError`, writing
    nothing, if any tensor of ``state`` holds a NaN or an infinity."""
    path = Path(path)
    bad = nonfinite_tensors(state)
    if bad:  # a diverged state never replaces the last good checkpoint
        raise DivergenceError(f"refusing to write {path}: non-finite values in {name_list(bad)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


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


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically; raise :class:`DivergenceError` (writing nothing)
    if any of its tensors holds a NaN or an infinity.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path``: a crash or kill at any moment leaves either the previous file or the new one.
    """
    commit_temporary(write_temporary(state, path), path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; a missing, truncated or foreign file raises an error naming it.

    ``torchvision:<name>`` (e.g. ``torchvision:fasterrcnn_resnet50_fpn``) is torchvision's
    trained detector as a checkpoint (:func:`frcnn.checkpoint.torchvision.torchvision_checkpoint`).
    """
    if str(path).startswith(TORCHVISION_PREFIX):
        return torchvision_checkpoint(str(path))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes; its write was "
                              f"interrupted?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__  # one line, never empty
        raise CheckpointError(f"cannot read checkpoint {path} ({reason}): is it a checkpoints/*.pt file of a "
                              f"run?") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not an frcnn checkpoint (no 'model' entry)")
    return state


class CheckpointDir:
    """The ``checkpoints/`` folder of a run: ``last.pt``, ``best.pt`` and periodic copies.

    Periodic copies are named ``model_{iteration:07d}.pt``; only the newest ``keep`` stay.
    """

    def __init__(self, directory: str | os.PathLike, keep: int):
        self.directory = Path(directory)
        self.keep = keep
        self._pending: list[tuple[Path, Path]] = []  # (temporary file, checkpoint it becomes)

    @property
    def last(self) -> Path:
        return self.directory / LAST

    @property
    def best(self) -> Path:
        return self.directory / BEST

    def periodic(self) -> list[Path]:
        """Periodic checkpoints, oldest first."""
        found = [(int(m.group(1)), p) for p in self.directory.glob("model_*.pt")
                 if (m := _PERIODIC.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def stage_last(self, state: dict[str, Any], periodic: bool = False) -> None:
        """Write ``last.pt`` (with ``periodic``, also a ``model_XXXXXXX.pt`` copy) to temporary
        files, to become the checkpoints on :meth:`commit`. The training loop commits once the
        next step has computed finite gradients from these weights, so that ``last.pt`` always
        holds weights that can take a step (finite weights can still overflow in the forward
        pass after a diverging update)."""
        self.discard()
        targets = [self.last] + ([self.directory / f"model_{state['iteration']:07d}.pt"]
                                 if periodic and self.keep > 0 else [])
        for target in targets:
            self._pending.append((write_temporary(state, target), target))

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def commit(self) -> None:
        """Make the staged files the checkpoints, pruning old periodic ones."""
        for tmp, target in self._pending:
            commit_temporary(tmp, target)
        if self._pending:
            for old in self.periodic()[:-self.keep] if self.keep > 0 else []:
                old.unlink()
        self._pending = []

    def discard(self) -> None:
        """Delete the staged files (their weights failed the next step)."""
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []

    def save_last(self, state: dict[str, Any], periodic: bool = False) -> None:
        """Write ``last.pt``; with ``periodic``, also a ``model_XXXXXXX.pt`` copy, pruning old ones."""
        self.stage_last(state, periodic)
        self.commit()

    def save_best(self, state: dict[str, Any]) -> None:
        save_checkpoint(state, self.best)

    def remove_temporaries(self) -> None:
        """Delete the temporary files an interrupted save left behind (``.last.pt.*.tmp``: a
        killed process never renames or removes them); call before this run saves anything."""
        stale = [p for p in self.directory.glob(".*.tmp") if p.is_file()]
        if stale:
            size = sum(p.stat().st_size for p in stale)
            for p in stale:
                p.unlink(missing_ok=True)
            log.info("removed %d unfinished checkpoint file(s) (%.1f MB) left by an interrupted save in %s",
                     len(stale), size / 2**20, self.directory)


def load_resume_checkpoint(resume: Optional[str], run_dir: str | os.PathLike,
                           map_location: Any = "cpu") -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """(path, state) of the checkpoint ``train.resume`` names, or (None, None) for a fresh start.

    ``auto``: ``last.pt`` of the run, or when it cannot be read (a truncated or empty file), the
    newest readable periodic ``model_*.pt``, saying so. A path: that file, no fallback. Raises
    CheckpointError naming every file tried and why when none can be read.
    """
    path = resolve_resume(resume, run_dir)
    if resume != "auto":
        return (path, load_checkpoint(path, map_location)) if path is not None else (None, None)
    folder = CheckpointDir(Path(run_dir) / "checkpoints", keep=0)
    candidates = ([folder.last] if folder.last.is_file() else []) + folder.periodic()[::-1]
    failures = []
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate, map_location)
        except CheckpointError as error:
            log.warning("%s", error)
            failures.append(str(error))
            continue
        if failures:
            log.warning("resuming from %s instead (the newest checkpoint that can be read)", candidate)
        return candidate, state
    if failures:
        raise CheckpointError(f"train.resume=auto: no checkpoint in {folder.directory} can be read: "
                              + "; ".join(failures))
    return None, None


def resolve_resume(resume: Optional[str], run_dir: str | os.PathLike) -> Optional[Path]:
    """Map ``train.resume`` to a checkpoint path, or None for a fresh start.

    ``auto``: ``<run_dir>/checkpoints/last.pt`` if it exists; a path: that file (it must exist).
    :func:`load_resume_checkpoint` also loads it, falling back to older checkpoints.
    """
    if resume is None:
        return None
    if resume == "auto":
        last = Path(run_dir) / "checkpoints" / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"train.resume={resume}: no such checkpoint")
    return path
