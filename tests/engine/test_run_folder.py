"""frcnn/engine/run_folder.py: one training per run folder, and no run replaced by another (the lock
itself is frcnn/utils/folder_lock.py's)."""

import json
import os
import socket
import subprocess
import time

import pytest

from frcnn.engine.run_folder import LOCK_FILE, RunFolderError, RunFolderLock, check_fresh_start
from frcnn.utils import folder_lock


def test_a_second_training_is_refused_naming_the_holder(tmp_path):
    with RunFolderLock(tmp_path):
        with pytest.raises(
            RunFolderError,
            match=rf"in use by the training started .* on host {socket.gethostname()} "
            rf"\(pid {os.getpid()}\)",
        ):
            RunFolderLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()  # given back on exit
    with RunFolderLock(tmp_path):  # and free again
        pass


def test_the_lock_is_given_back_when_the_run_fails(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with RunFolderLock(tmp_path):
            raise ZeroDivisionError
    assert not (tmp_path / LOCK_FILE).exists()


def _plant(folder, **holder):
    (folder / LOCK_FILE).write_text(json.dumps({"started": "2026-01-01T00:00:00", **holder}))


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _plant(tmp_path, host=socket.gethostname(), pid=dead.pid)
    with RunFolderLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
    """The pid runs, but it is another process than the one that wrote the lock."""
    _plant(tmp_path, host=socket.gethostname(), pid=os.getpid(), process_start="1")
    with RunFolderLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["process_start"] != "1"


def test_another_hosts_lock_holds_until_its_heartbeat_stops(tmp_path):
    _plant(tmp_path, host="node-7", pid=4242)
    with pytest.raises(RunFolderError, match="on host node-7 \\(pid 4242\\)"):
        RunFolderLock(tmp_path).acquire()
    old = time.time() - folder_lock.STALE_AFTER_S - 5
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with RunFolderLock(tmp_path):
        pass


def test_the_holder_keeps_its_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_lock, "HEARTBEAT_S", 0.05)
    with RunFolderLock(tmp_path) as lock:
        old = time.time() - 1000
        os.utime(lock.path, (old, old))
        time.sleep(0.3)
        assert time.time() - lock.path.stat().st_mtime < 10


def test_a_lock_of_another_process_is_not_removed_on_release(tmp_path):
    lock = RunFolderLock(tmp_path)
    lock.acquire()
    _plant(tmp_path, host="node-7", pid=1)  # e.g. taken over after this process was thought gone
    lock.release()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["host"] == "node-7"


def test_a_new_run_in_a_finished_runs_folder_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"trained")
    with pytest.raises(
        RunFolderError, match="already holds a training run .*last.pt.*train.resume=auto.*train.overwrite=true"
    ):
        check_fresh_start(tmp_path, resume=None, overwrite=False)
    check_fresh_start(tmp_path, resume="auto", overwrite=False)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"trained"
    check_fresh_start(tmp_path / "elsewhere", resume=None, overwrite=False)  # an empty folder is fine


def test_overwrite_deletes_the_earlier_runs_files(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in ("last.pt", "model_0000006.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"old")
    (tmp_path / "losses.jsonl").write_text('{"iteration": 1}\n')
    check_fresh_start(tmp_path, resume=None, overwrite=True)
    assert list((tmp_path / "checkpoints").iterdir()) == [] and not (tmp_path / "losses.jsonl").exists()
