"""Distributed training: single-process fallbacks, the replica check with 2 gloo processes, and
a job that always ends: a stalled rank is named by the others within the collective timeout, a
second signal exits at once, and workers stop when their launcher is killed."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from frcnn.engine.distributed import (
    StalledRankError,
    check_replicas_in_sync,
    init_distributed,
    parameter_checksum,
    stalled_rank_error,
)
from frcnn.engine.interrupt import StopRequest
from frcnn.utils.dist import (
    all_gather_object,
    all_reduce_mean,
    broadcast_buffers,
    collectives,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
)

REPO = Path(__file__).resolve().parents[2]


def test_single_process_fallbacks():
    assert not is_distributed()
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)
    assert all_gather_object({"a": 1}) == [{"a": 1}]
    assert all_reduce_mean(torch.tensor([2.0])).item() == 2.0
    assert init_distributed(torch.device("cpu")) == torch.device("cpu")


def test_checksum_sees_parameters_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    before = parameter_checksum(model)
    model[1].running_mean += 1
    assert parameter_checksum(model) != before


def _replica_worker(rank: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[1].running_var += rank  # each rank's BN statistics differ, as after a DDP step
    broadcast_buffers(model)
    results[f"synced {rank}"] = check_replicas_in_sync(model)
    if rank == 1:
        with torch.no_grad():
            model[0].weight[0, 0] += 1e-6
    try:
        check_replicas_in_sync(model)
    except RuntimeError as e:
        results[f"perturbed {rank}"] = str(e)
    dist.destroy_process_group()


def test_replica_check_with_two_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_replica_worker, args=(port, results), nprocs=2)
    assert results["synced 0"] == results["synced 1"]  # buffers were broadcast from rank 0
    for rank in (0, 1):  # every rank raises, naming the diverged one
        assert "diverged from rank 0 on ranks [1]" in results[f"perturbed {rank}"]


def test_stop_request_turns_sigterm_into_a_flag():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored on exit


class _FakeStore:
    def __init__(self, counts):
        self.values = {f"frcnn/collectives/{r}": str(c).encode() for r, c in counts.items()}

    def check(self, keys):
        return all(k in self.values for k in keys)

    def get(self, key):
        return self.values[key]


def test_a_collective_timeout_names_the_ranks_behind(monkeypatch):
    # frcnn.engine.distributed's own references to the rank helpers: a rank 0 of 3
    monkeypatch.setattr("frcnn.engine.distributed.is_distributed", lambda: True)
    monkeypatch.setattr("frcnn.engine.distributed.get_rank", lambda: 0)
    monkeypatch.setattr("frcnn.engine.distributed.get_world_size", lambda: 3)
    monkeypatch.setattr(collectives, "store", _FakeStore({0: 7, 1: 6, 2: 7}))
    monkeypatch.setattr(collectives, "timeout_s", 4.0)
    timeout = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 4000ms for recv operation")
    error = stalled_rank_error(timeout)
    assert isinstance(error, StalledRankError)
    assert str(error).startswith("rank(s) 1 (1 behind) stopped responding: rank 0 waited 4 s (train.dist_timeout)")
    assert stalled_rank_error(RuntimeError("CUDA out of memory")) is None  # not a peer failure


STALL_WORKER = """
import os, signal, sys, torch
from frcnn.cli.errors import error_message
from frcnn.engine.distributed import destroy_distributed, init_distributed, stalled_rank_error
from frcnn.utils.dist import all_reduce_mean, get_rank
init_distributed(torch.device("cpu"), timeout_s=2)
open(os.environ["PID_DIR"] + f"/{get_rank()}", "w").write(str(os.getpid()))
try:
    for step in range(1000):
        if get_rank() == 1 and step == 3:
            os.kill(os.getpid(), signal.SIGSTOP)  # a rank that stops responding
        all_reduce_mean(torch.ones(1))
except RuntimeError as e:
    print(f"rank {get_rank()}: {error_message(stalled_rank_error(e), 'worker')}", file=sys.stderr, flush=True)
    destroy_distributed()
    sys.exit(1)
"""


@pytest.mark.slow
def test_a_stalled_rank_ends_the_job_with_its_rank_named(tmp_path):
    """Two gloo processes under torchrun; rank 1 stops (SIGSTOP). Rank 0 names it after the 2 s
    collective timeout, and torchrun ends the job: no process is left behind."""
    (tmp_path / "worker.py").write_text(STALL_WORKER)
    env = dict(os.environ, PYTHONPATH=str(REPO), PID_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=0",
        str(tmp_path / "worker.py"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "rank 0: rank(s) 1 (1 behind) stopped responding: rank 0 waited 2 s (train.dist_timeout)" in result.stderr
    for rank in (0, 1):
        pid = int((tmp_path / str(rank)).read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


SIGNAL_WORKER = """
import logging, os
logging.basicConfig(level=logging.INFO)
from frcnn.engine.interrupt import StopRequest
with StopRequest() as stop:
    print("ready", flush=True)
    os.read(os.pipe()[0], 1)  # blocked, as in a collective waiting for a stalled process
"""


def test_a_second_signal_exits_at_once_even_when_blocked(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_WORKER],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None  # the first signal only asks the loop to stop
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    stderr = process.stderr.read()
    assert "received SIGTERM: finishing the current iteration" in stderr
    assert "received SIGTERM again: exiting at once" in stderr


ORPHAN = """
import os, subprocess, sys, time
if sys.argv[1] == "launcher":  # stands in for torchrun: starts a worker, then is killed
    worker = subprocess.Popen([sys.executable, "-c", sys.argv[2], "worker", sys.argv[2]])
    print(worker.pid, flush=True)
    time.sleep(600)
else:
    from frcnn.engine.distributed import stop_with_launcher
    stop_with_launcher()
    print("armed", file=sys.stderr, flush=True)
    time.sleep(600)
"""


def test_workers_stop_when_the_launcher_is_killed(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TORCHELASTIC_RUN_ID="test")
    launcher = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, "launcher", ORPHAN],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker_pid = int(launcher.stdout.readline())
    assert launcher.stderr.readline().strip() == "armed"
    launcher.kill()  # kill -9 torchrun
    launcher.wait()
    for _ in range(100):
        try:
            if Path(f"/proc/{worker_pid}/stat").read_text().split()[2] == "Z":
                return  # ended by SIGTERM, not yet reaped by its new parent
        except FileNotFoundError:
            return  # ended and reaped
        time.sleep(0.1)
    os.kill(worker_pid, signal.SIGKILL)
    pytest.fail("the worker outlived its launcher")


def test_a_signal_to_a_forked_worker_does_not_count_for_the_parent():
    """Ctrl-C reaches the DataLoader workers too; their share must not be the parent's second signal."""
    with StopRequest() as stop:
        child = os.fork()
        if child == 0:  # the worker: receives the same Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
            os._exit(0)
        os.waitpid(child, 0)
        time.sleep(0.3)  # time for the watcher to see a byte, were one written
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)  # the parent's own first Ctrl-C only asks to stop
        assert stop.requested


def test_leaving_the_stop_request_does_not_wait_for_forked_workers():
    """DataLoader workers forked inside it inherit its pipe; the watcher used to wait for them."""
    with StopRequest():
        child = os.fork()
        if child == 0:  # a worker that outlives the training loop's StopRequest
            time.sleep(5)
            os._exit(0)
    assert os.waitpid(child, os.WNOHANG) == (0, 0)  # left at once, the worker still running
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
