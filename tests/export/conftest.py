"""Fixtures of the export tests: tiny checkpoints (RoIAlign and RoIPool) exported once per session."""

from pathlib import Path

import pytest
from export_fixtures import tiny_config, train_tiny_checkpoint

from frcnn.export import export_checkpoint


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes_tiny")


@pytest.fixture(scope="session")
def exported(tmp_path_factory, shapes_root):
    """``exported(pooler) -> (checkpoint path, train config, export folder)``, made once per pooler.
    The RoIAlign model is trained a little longer (12 AdamW steps): its mAP is compared too."""
    made = {}

    def make(pooler: str):
        if pooler not in made:
            directory = tmp_path_factory.mktemp(f"export_{pooler}")
            cfg = tiny_config(shapes_root, f"model.roi_head.pooler={pooler}")
            steps, lr = (12, 4e-3) if pooler == "roi_align" else (2, 1e-2)
            train_tiny_checkpoint(directory / "last.pt", cfg, steps=steps, lr=lr)
            export_checkpoint(directory / "last.pt", directory / "exported")
            made[pooler] = (directory / "last.pt", cfg, directory / "exported")
        return made[pooler]

    return make
