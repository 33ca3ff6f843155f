"""Distributed helpers: single-process fallbacks, and the replica check with 2 gloo processes."""

import os
import signal
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from frcnn.engine import distributed as du
from frcnn.utils import dist as dist_utils
from frcnn.engine.interrupt import StopRequest


def test_single_process_fallbacks():
    assert not dist_utils.is_distributed()
    assert (dist_utils.get_rank(), dist_utils.get_world_size(), dist_utils.is_main_process()) == (0, 1, True)
    assert dist_utils.all_gather_object({"a": 1}) == [{"a": 1}]
    assert dist_utils.all_reduce_mean(torch.tensor([2.0])).item() == 2.0
    assert du.init_distributed(torch.device("cpu")) == torch.device("cpu")


def test_checksum_sees_parameters_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    before = du.parameter_checksum(model)
    model[1].running_mean += 1
    assert du.parameter_checksum(model) != before


def _replica_worker(rank: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[1].running_var += rank  # each rank's BN statistics differ, as after a DDP step
    dist_utils.broadcast_buffers(model)
    results[f"synced {rank}"] = du.check_replicas_in_sync(model)
    if rank == 1:
        with torch.no_grad():
            model[0].weight[0, 0] += 1e-6
    try:
        du.check_replicas_in_sync(model)
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
