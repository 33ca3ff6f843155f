"""Fixtures of the engine tests: a tiny shapes dataset and configs composed on it."""

from pathlib import Path

import pytest
from omegaconf import DictConfig
from train_configs import compose_train


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Where the debug=tiny shapes set is generated (once per test session)."""
    return tmp_path_factory.mktemp("shapes_tiny")


@pytest.fixture
def tiny_cfg(tiny_root, test_device):
    """Compose ``debug=tiny`` on the session's tiny shapes set, on ``test_device`` (``FRCNN_TEST_DEVICE``, default cpu)."""

    def make(*overrides: str) -> DictConfig:
        return compose_train("debug=tiny", f"dataset.root={tiny_root}", f"device={test_device}", *overrides)

    return make
