"""The fixtures of every test package, in one set.

The device the model and training tests run on is defined here: ``FRCNN_TEST_DEVICE=cuda
python -m pytest -q`` runs the training, model-on-device and mixed-precision tests on the GPU;
the default is the CPU. The other fixtures live with their helpers in :mod:`tests.helpers`.
"""

import os

# pytest-xdist (pyproject.toml's addopts: -n auto) runs the tests in one worker per core; each
# worker's PyTorch and the commands it starts get that worker's share of the cores, so that
# OpenMP threads of different workers do not spin against each other. Set before torch is imported.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // WORKERS)))

import pytest  # noqa: E402
import torch  # noqa: E402

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


def pytest_collection_modifyitems(config, items):
    """With several workers, the slow tests (a few minutes of compiling among them) start first,
    so that the short ones fill the workers' last minutes rather than one long test."""
    if WORKERS > 1:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    """``torch.device(FRCNN_TEST_DEVICE)`` (default cpu); an unusable device fails every test that asks."""
    device = torch.device(TEST_DEVICE)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"FRCNN_TEST_DEVICE={TEST_DEVICE} but torch sees no CUDA device")
    return device
