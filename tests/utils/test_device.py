"""frcnn/utils/device.py: the device, the one AMP setting and its autocast, for training and evaluation alike."""

import logging

import pytest
import torch

from frcnn.evaluation import DetectionEvaluator, run_inference
from frcnn.utils.device import Amp, autocast, autocast_dtype, resolve_device
from tests.helpers.fakes import batch_of, make_fake_dataset


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_autocast_dtype_per_setting_and_device(caplog):
    cpu = torch.device("cpu")
    assert autocast_dtype("off", cpu) is None
    assert autocast_dtype(None, cpu) is None
    assert autocast_dtype(Amp.bf16, cpu) is torch.bfloat16  # bf16 autocast runs on CPUs too
    assert autocast_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16
    with caplog.at_level(logging.WARNING):
        assert autocast_dtype("fp16", cpu, key="amp") is None
    assert "amp=fp16 ignored" in caplog.text


def test_autocast_runs_matmuls_in_the_dtype():
    a = torch.randn(4, 4)
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), None):
        assert (a @ a).dtype == torch.float32


class AutocastProbe(torch.nn.Module):
    """Records the autocast state of each forward; detects nothing."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images, image_sizes, targets=None):
        device = images.device.type
        self.seen.append(torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None)
        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
        return [dict(empty) for _ in range(len(images))]


@pytest.mark.parametrize("amp", [torch.bfloat16, None])
def test_evaluation_autocasts_to_the_runs_dtype(amp):
    """run_inference autocasts to the dtype of the run's AMP setting (bf16 here, on the CPU), not to
    autocast's default (fp16 on CUDA)."""
    dataset = make_fake_dataset(num_images=2)
    model = AutocastProbe()
    run_inference(model, [batch_of(dataset, [0, 1])], DetectionEvaluator(dataset), "cpu", amp=amp)
    assert model.seen == [amp]
