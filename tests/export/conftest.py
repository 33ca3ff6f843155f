"""Fixtures of the export tests: tiny checkpoints (C4 RoIAlign and RoIPool, FPN) exported once per session."""

from pathlib import Path

import pytest
from export_fixtures import VARIANTS, tiny_config, train_tiny_checkpoint

from frcnn.export import export_checkpoint


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes_tiny")


@pytest.fixture(scope="session")
def exported(tmp_path_factory, shapes_root):
    """``exported(variant) -> (checkpoint path, train config, export folder)``, made once per
    variant of :data:`VARIANTS`. The RoIAlign model is trained a little longer (12 AdamW steps):
    its mAP is compared too."""
    made = {}

    def make(variant: str):
        if variant not in made:
            directory = tmp_path_factory.mktemp(f"export_{variant}")
            cfg = tiny_config(shapes_root, *VARIANTS[variant])
            steps, lr = {"roi_align": (12, 4e-3), "fpn": (2, 1e-3)}.get(variant, (2, 1e-2))
            train_tiny_checkpoint(directory / "last.pt", cfg, steps=steps, lr=lr)
            export_checkpoint(directory / "last.pt", directory / "exported")
            made[variant] = (directory / "last.pt", cfg, directory / "exported")
        return made[variant]

    return make
