"""train.sync_bn: trainable BatchNorm becomes SyncBatchNorm under several processes (frozen
BatchNorm untouched), a no-op on one, refused on the CPU (PyTorch's SyncBatchNorm has no CPU
kernels); on a GPU, two processes hold the same BatchNorm statistics after a step."""

import logging
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.engine.sync_bn import convert_sync_batchnorm
from frcnn.engine.trainer import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_model() -> nn.Module:
    """A conv, trainable BatchNorm, ReLU, conv and frozen BatchNorm."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), FrozenBatchNorm2d(2))


def test_one_process_leaves_the_model_as_it_is(caplog):
    caplog.set_level(logging.INFO, "frcnn.engine.sync_bn")
    model = _small_model()
    assert convert_sync_batchnorm(model, torch.device("cpu")) is model
    assert type(model[1]) is nn.BatchNorm2d
    assert "train.sync_bn: a single process, nothing to synchronise" in caplog.text


def test_a_run_with_sync_bn_on_one_process_trains(tiny_cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO, "frcnn.engine.sync_bn")
    train(tiny_cfg("train.sync_bn=true", "train.max_iters=1", "train.eval_at_end=false"), tmp_path)
    assert "train.sync_bn: a single process" in caplog.text
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def _convert_worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = _small_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # built before the conversion
        keys = list(model.state_dict())
        try:
            convert_sync_batchnorm(model, torch.device("cpu"))
        except ValueError as error:
            results[f"cpu {rank}"] = str(error)
        converted = convert_sync_batchnorm(model, torch.device("cuda"))  # converting moves nothing
        params = {id(p) for group in optimizer.param_groups for p in group["params"]}
        results[f"converted {rank}"] = {
            "types": [type(m).__name__ for m in converted],
            "same_keys": list(converted.state_dict()) == keys,
            "same_parameters": {id(p) for p in converted.parameters()} == params,
        }
        frozen_only = nn.Sequential(nn.Conv2d(3, 2, 1), FrozenBatchNorm2d(2))
        results[f"frozen {rank}"] = convert_sync_batchnorm(frozen_only, torch.device("cpu")) is frozen_only
    finally:
        dist.destroy_process_group()


def test_two_processes_convert_trainable_batchnorm_only_and_refuse_the_cpu():
    results = mp.Manager().dict()
    mp.spawn(_convert_worker, args=(_free_port(), results), nprocs=2)
    for rank in (0, 1):
        assert results[f"converted {rank}"] == {
            "types": ["Conv2d", "SyncBatchNorm", "ReLU", "Conv2d", "FrozenBatchNorm2d"],
            "same_keys": True,  # checkpoints keep their keys
            "same_parameters": True,  # the optimiser still steps the model's own tensors
        }
        assert results[f"frozen {rank}"]  # nothing to synchronise: no error on the CPU either
        assert "train.sync_bn=true: PyTorch's SyncBatchNorm runs on GPUs only" in results[f"cpu {rank}"]


def _step_worker(rank: int, port: int, sync: bool, results) -> None:
    """One DDP step of the small model on this rank's own batch (both ranks on GPU 0, over gloo)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        device = torch.device("cuda", 0)
        model = _small_model().to(device)
        if sync:
            model = convert_sync_batchnorm(model, device)
        ddp = DistributedDataParallel(model, device_ids=[0])
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(rank)) * (1 + rank) + rank
        ddp(images.to(device)).sum().backward()
        optimizer.step()
        results[(sync, rank)] = [model[1].running_mean.tolist(), model[1].running_var.tolist(), images.tolist()]
    finally:
        dist.destroy_process_group()


def test_two_processes_hold_the_same_batchnorm_statistics_after_a_step(test_device):
    if test_device.type != "cuda":
        pytest.skip("PyTorch's SyncBatchNorm runs on GPUs only; FRCNN_TEST_DEVICE=cuda runs this test")
    results = mp.Manager().dict()
    for sync in (False, True):
        mp.spawn(_step_worker, args=(_free_port(), sync, results), nprocs=2)
    mean, var, images = ({key: torch.tensor(value[i]) for key, value in results.items()} for i in range(3))
    assert not torch.allclose(mean[(False, 0)], mean[(False, 1)])  # each rank its own batch: they differ
    assert torch.allclose(mean[(True, 0)], mean[(True, 1)]) and torch.allclose(var[(True, 0)], var[(True, 1)])
    # Both equal the statistics of one BatchNorm over the two ranks' images together.
    reference = _small_model()
    reference(torch.cat([images[(True, 0)], images[(True, 1)]]))
    assert torch.allclose(mean[(True, 0)], reference[1].running_mean, atol=1e-5)
    assert torch.allclose(var[(True, 0)], reference[1].running_var, atol=1e-5)
