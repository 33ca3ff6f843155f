"""Fixtures of the engine tests: configs composed in-process, a tiny shapes dataset."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import frcnn.config  # noqa: F401  (registers the train_schema)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TEST_DEVICE = os.environ.get("FRCNN_TEST_DEVICE", "cpu")  # as tests/conftest.py's test_device


def compose_train(*overrides: str) -> DictConfig:
    """``configs/train.yaml`` composed with ``overrides``, as scripts/train.py would see it."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Where the debug=tiny shapes set is generated (once per test session)."""
    return tmp_path_factory.mktemp("shapes_tiny")


@pytest.fixture
def tiny_cfg(tiny_root):
    """Compose ``debug=tiny`` on the session's tiny shapes set, on ``FRCNN_TEST_DEVICE`` (default cpu)."""

    def make(*overrides: str) -> DictConfig:
        return compose_train("debug=tiny", f"dataset.root={tiny_root}", f"device={TEST_DEVICE}", *overrides)

    return make
