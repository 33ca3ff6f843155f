"""A folder with one owner: the process that holds its lock (a training's run folder, predict.py's output).

The lock is the file ``FOLDER/.frcnn.lock``, created with ``O_CREAT | O_EXCL``, which is atomic on
local file systems and on NFS v3 and later, the assumption for multi-node runs on a shared file
system. It names its holder (what it is, host, pid, start time) and its holder touches it every
:data:`HEARTBEAT_S` seconds, so that a lock left by a killed process is recognised and taken over:
on the same host when that pid no longer runs the same process, from another host when the lock has
not been touched for :data:`STALE_AFTER_S`. Every command uses the same file, so a training and a
prediction never write into one folder at the same time either.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

LOCK_FILE = ".frcnn.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # a lock of another host untouched this long belongs to a process that is gone


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
        return True  # another host: only the heartbeat tells (see FolderLock.stale)
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # runs, as another user
    recorded, current = holder.get("process_start"), _process_start(pid)
    return recorded is None or current is None or recorded == current


class FolderLock:
    """The exclusive lock of ``folder``; a context manager (``with FolderLock(...): ...``).

    holder: what this process is, in the message another process gets (``"training"``,
    ``"prediction"``); elsewhere: the key that names another folder (``"hydra.run.dir"``,
    ``"output"``); error: the exception class a refused :meth:`acquire` raises (the caller's usage
    error, so that its command ends in one line).
    """

    def __init__(self, folder: str | os.PathLike, holder: str, elsewhere: str, error: type[Exception] = RuntimeError):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.holder, self.elsewhere, self.error = holder, elsewhere, error
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None
        self._identity: Optional[dict] = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (creating the folder), or raise ``error`` naming the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._identity = {"host": socket.gethostname(), "pid": os.getpid(),
                          "process_start": _process_start(os.getpid()),
                          "started": datetime.now().isoformat(timespec="seconds"), "holder": self.holder}  # fmt: skip
        if not self._create():
            holder = self._read()
            if holder is not None and not self.stale(holder):
                # A lock written before locks named their holder is a training's.
                raise self.error(
                    f"{self.folder} is in use by the {holder.get('holder', 'training')} started "
                    f"{holder.get('started', '?')} on host {holder.get('host', '?')} (pid {holder.get('pid', '?')}): "
                    f"wait for it to finish, stop it, or choose another {self.elsewhere}"
                )
            log.warning("taking over the lock of %s left by %s", self.folder, _describe(holder))
            self.path.unlink(missing_ok=True)
            if not self._create():
                raise self.error(f"{self.folder}: another {self.holder} took its lock at the same moment")
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._touch, name="folder-lock-heartbeat", daemon=True)
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
