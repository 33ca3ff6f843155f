"""The fixtures of every test package, in one set.

The device the model and training tests run on is defined here: ``FRCNN_TEST_DEVICE=cuda
python -m pytest -q`` runs the training, model-on-device and mixed-precision tests on the GPU;
the default is the CPU. The other fixtures live with their helpers in :mod:`tests.helpers`.
"""

import os

import pytest
import torch

# The helpers' asserts report their operands as the tests' own do.
pytest.register_assert_rewrite("tests.helpers")

pytest_plugins = [
    "tests.helpers.configs",
    "tests.helpers.checkpoints",
    "tests.helpers.commands",
    "tests.helpers.datasets",
    "tests.helpers.fakes",
    "tests.helpers.models",
]

TEST_DEVICE = os.environ.get("FRCNN_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    """``torch.device(FRCNN_TEST_DEVICE)`` (default cpu); an unusable device fails every test that asks."""
    device = torch.device(TEST_DEVICE)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"FRCNN_TEST_DEVICE={TEST_DEVICE} but torch sees no CUDA device")
    return device
