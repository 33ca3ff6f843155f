"""A run folder has one owner: the training that holds its lock.

A training takes ``RUN/.frcnn.lock`` for its lifetime (rank 0 of a torchrun launch, the one
that writes the folder) and gives it back on any exit. The lock file is created with
``O_CREAT | O_EXCL``, which is atomic on local file systems and on NFS v3 and later, the
assumption for multi-node runs on a shared file system. It names its holder (host, pid, start
time) and its holder touches it every :data:`HEARTBEAT_S` seconds, so that a lock left by a
killed process is recognised and taken over: on the same host when that pid no longer runs
the same process, from another host when the lock has not been touched for :data:`STALE_AFTER_S`.

A new training (no ``train.resume``) in a folder that already holds a run's checkpoints stops
too, unless ``train.overwrite=true``: re-running a command must not replace a trained model.

:func:`own_run_folder` does both for a training, under torchrun too: rank 0 takes the lock and
checks the folder, and every rank raises the same error when it cannot (so that none waits for
the others in a collective).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Optional

from frcnn.utils.dist import broadcast_object, is_main_process

log = logging.getLogger(__name__)

LOCK_FILE = ".frcnn.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # a lock of another host untouched this long belongs to a process that is gone


class RunFolderError(RuntimeError):
    """The run folder is in use by another training, or holds a run that this one would replace."""


def _process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None where unknown:
    with the pid it identifies a process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the command name


def _alive(holder: dict) -> bool:
    """Whether the process that wrote ``holder`` (a lock's contents) still runs, as far as this host can tell."""
    if holder.get("host") != socket.gethostname():
        return True  # another host: only the heartbeat tells (see RunFolderLock.stale)
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # runs, as another user
    recorded, current = holder.get("process_start"), _process_start(pid)
    return recorded is None or current is None or recorded == current


class RunFolderLock:
    """The exclusive lock of a run folder; a context manager (``with RunFolderLock(run_dir): ...``)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None
        self._identity: Optional[dict] = None

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunFolderError` naming the training that holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._identity = {"host": socket.gethostname(), "pid": os.getpid(),
                          "process_start": _process_start(os.getpid()),
                          "started": datetime.now().isoformat(timespec="seconds")}  # fmt: skip
        if not self._create():
            holder = self._read()
            if holder is not None and not self.stale(holder):
                raise RunFolderError(
                    f"{self.run_dir} is in use by the training started {holder.get('started', '?')} on host "
                    f"{holder.get('host', '?')} (pid {holder.get('pid', '?')}): wait for it to finish, stop it, or "
                    f"choose another hydra.run.dir"
                )
            log.warning("taking over the lock of %s left by %s", self.run_dir, _describe(holder))
            self.path.unlink(missing_ok=True)
            if not self._create():
                raise RunFolderError(f"{self.run_dir}: another training took its lock at the same moment")
        self._heartbeat = threading.Thread(target=self._touch, name="run-folder-heartbeat", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Give the lock back (only if it is still this process's)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self._identity is not None and self._read() == self._identity:
            self.path.unlink(missing_ok=True)
        self._identity = None

    def stale(self, holder: dict) -> bool:
        """A lock whose process is gone: dead on this host, or not touched for STALE_AFTER_S from another."""
        if not _alive(holder):
            return True
        try:
            return time.time() - self.path.stat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            return True

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._identity, f)
        return True

    def _read(self) -> Optional[dict]:
        """The lock's contents; None when it is gone or unreadable (a half-written lock is stale)."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _touch(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:  # the folder went away or became read-only: the run itself will say so
                return


def _describe(holder: Optional[dict]) -> str:
    if holder is None:
        return "an unreadable lock file"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (started {holder.get('started', '?')})"


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
