"""Training configs composed in-process, as scripts/train.py composes them (imported by the
engine tests and their conftest; a module of its own name, so that it is found whichever
test folder pytest collected first)."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import frcnn.config  # noqa: F401  (registers the train_schema)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def compose_train(*overrides: str) -> DictConfig:
    """``configs/train.yaml`` composed with ``overrides``, as scripts/train.py would see it."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("train", overrides=list(overrides))
