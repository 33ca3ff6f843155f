"""The ``checkpoints/`` folder of a run: ``last.pt``, ``best.pt``, periodic copies, the
staged-checkpoint protocol, and finding the checkpoint ``train.resume`` continues from."""

import logging
import os
import re
from pathlib import Path
from typing import Any, Optional

from frcnn.checkpoint.format import Checkpoint, CheckpointError
from frcnn.checkpoint.io import commit_temporary, load_checkpoint, save_checkpoint, write_temporary

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
_PERIODIC = re.compile(r"model_(\d+)\.pt")


class CheckpointDir:
    """The checkpoints of one run, and the iterations they hold.

    Periodic copies are named ``model_{iteration:07d}.pt``; only the newest ``keep`` stay.

    The training loop *stages* a checkpoint (writes it to temporary files) and *commits* it
    (renames them to ``last.pt`` and the periodic copy) once the next step has computed finite
    gradients from its weights, or *discards* it, so that ``last.pt`` always holds weights that
    can take a step (finite weights can still overflow in the forward pass after a diverging
    update). ``saved_at`` and ``staged_at`` are the iterations of the newest committed and the
    newest staged checkpoint (None: none this run).

    Under torchrun every process keeps this bookkeeping (each one reports a divergence), and
    only the one constructed with ``writes`` (rank 0) touches the files.
    """

    def __init__(self, directory: str | os.PathLike, keep: int, writes: bool = True):
        self.directory = Path(directory)
        self.keep = keep
        self.writes = writes
        self.saved_at: Optional[int] = None
        self.staged_at: Optional[int] = None
        self._pending: list[tuple[Path, Path]] = []  # (temporary file, checkpoint it becomes)

    @property
    def last(self) -> Path:
        return self.directory / LAST

    @property
    def best(self) -> Path:
        return self.directory / BEST

    def periodic(self) -> list[Path]:
        """Periodic checkpoints, oldest first."""
        found = [(int(m.group(1)), p) for p in self.directory.glob("model_*.pt") if (m := _PERIODIC.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def resumed_at(self, iteration: int) -> None:
        """Record that the run continues from a checkpoint of ``iteration``."""
        self.saved_at = self.staged_at = iteration

    def stage_last(self, checkpoint: Checkpoint, periodic: bool = False) -> None:
        """Write ``last.pt`` (with ``periodic``, also a ``model_XXXXXXX.pt`` copy) to temporary
        files, to become the checkpoints on :meth:`commit`."""
        self.discard()
        if self.writes:
            targets = [self.last] + (
                [self.directory / f"model_{checkpoint.iteration:07d}.pt"] if periodic and self.keep > 0 else []
            )
            for target in targets:
                self._pending.append((write_temporary(checkpoint, target), target))
        self.staged_at = checkpoint.iteration

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def commit(self) -> None:
        """Make the staged files the checkpoints, pruning old periodic ones."""
        for tmp, target in self._pending:
            commit_temporary(tmp, target)
        if self._pending:
            for old in self.periodic()[: -self.keep] if self.keep > 0 else []:
                old.unlink()
        self._pending = []
        self.saved_at = self.staged_at

    def discard(self) -> None:
        """Delete the staged files (their weights failed the next step, or no step followed)."""
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []

    def save_last(self, checkpoint: Checkpoint, periodic: bool = False) -> None:
        """Write ``last.pt``; with ``periodic``, also a ``model_XXXXXXX.pt`` copy, pruning old ones."""
        self.stage_last(checkpoint, periodic)
        self.commit()

    def save_best(self, checkpoint: Checkpoint) -> None:
        """Write ``best.pt``: the weights to deploy, without the training state."""
        if self.writes:
            save_checkpoint(checkpoint.weights_only(), self.best)

    def kept(self) -> str:
        """What a run that stops on an error leaves: ``<dir>/last.pt (iteration N) is the last
        checkpoint``, naming the staged one it discarded."""
        kept = (
            f"{self.last} (iteration {self.saved_at}) is the last checkpoint"
            if self.saved_at is not None
            else "no checkpoint was written"
        )
        if self.staged_at != self.saved_at:
            kept += f" (the one of iteration {self.staged_at} was discarded: its weights fail a step)"
        return kept

    def remove_temporaries(self) -> None:
        """Delete the temporary files an interrupted save left behind (``.last.pt.*.tmp``: a
        killed process never renames or removes them); call before this run saves anything."""
        stale = [p for p in self.directory.glob(".*.tmp") if p.is_file()] if self.writes else []
        if stale:
            size = sum(p.stat().st_size for p in stale)
            for p in stale:
                p.unlink(missing_ok=True)
            log.info(
                "removed %d unfinished checkpoint file(s) (%.1f MB) left by an interrupted save in %s",
                len(stale),
                size / 2**20,
                self.directory,
            )


def load_resume_checkpoint(
    resume: Optional[str], checkpoints: CheckpointDir, map_location: Any = "cpu"
) -> tuple[Optional[Path], Optional[Checkpoint]]:
    """(path, checkpoint) of what ``train.resume`` names, or (None, None) for a fresh start.

    ``auto``: ``last.pt`` of ``checkpoints`` if it exists, or when it cannot be read (a truncated
    or empty file), the newest readable periodic ``model_*.pt``, saying so; none there: a fresh
    start. A path: that file (it must exist), no fallback. Raises :class:`CheckpointError`
    naming every file tried and why when none can be read.
    """
    if resume is None:
        return None, None
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"train.resume={resume}: no such checkpoint")
        return path, load_checkpoint(path, map_location)
    candidates = ([checkpoints.last] if checkpoints.last.is_file() else []) + checkpoints.periodic()[::-1]
    failures = []
    for candidate in candidates:
        try:
            checkpoint = load_checkpoint(candidate, map_location)
        except CheckpointError as error:
            log.warning("%s", error)
            failures.append(str(error))
            continue
        if failures:
            log.warning("resuming from %s instead (the newest checkpoint that can be read)", candidate)
        return candidate, checkpoint
    if failures:
        raise CheckpointError(
            f"train.resume=auto: no checkpoint in {checkpoints.directory} can be read: " + "; ".join(failures)
        )
    return None, None
