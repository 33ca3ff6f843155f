"""Configs composed in-process, as the commands compose them (:func:`frcnn.config.compose`),
and the fixtures of a tiny shapes set with configs composed on it."""

from pathlib import Path

import pytest
from omegaconf import DictConfig

import frcnn.config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def compose_config(name: str, *overrides: str) -> DictConfig:
    """``configs/<name>.yaml`` composed with ``overrides``, as ``scripts/<name>.py`` would see it."""
    return frcnn.config.compose(overrides, config_name=name)


def compose_train(*overrides: str) -> DictConfig:
    """``configs/train.yaml`` composed with ``overrides`` and value-checked, as scripts/train.py sees it."""
    return compose_config("train", *overrides)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Where the debug=tiny shapes set is generated (once per test session)."""
    return tmp_path_factory.mktemp("shapes_tiny")


@pytest.fixture
def tiny_cfg(tiny_root, test_device):
    """Compose ``debug=tiny`` on the session's tiny shapes set, on ``test_device`` (``FRCNN_TEST_DEVICE``,
    default cpu)."""

    def make(*overrides: str) -> DictConfig:
        return compose_train("debug=tiny", f"dataset.root={tiny_root}", f"device={test_device}", *overrides)

    return make
