"""A tiny trained checkpoint (INTERFACES.md format) for the end-to-end script tests."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import frcnn.config  # noqa: F401  (registers train_schema)
import frcnn.evaluation.config  # noqa: F401  (registers evaluate_schema / predict_schema)
from frcnn.data import build_dataset, build_train_loader
from frcnn.models import build_model

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def compose_config(name: str, *overrides: str) -> DictConfig:
    """``configs/<name>.yaml`` composed with ``overrides``, as the script would see it."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(name, overrides=list(overrides))


def tiny_train_config(shapes_root: Path) -> DictConfig:
    """debug=tiny (a dozen 64-96 px shapes images, ResNet-18 C4) generated under shapes_root."""
    return compose_config("train", "debug=tiny", f"dataset.root={shapes_root}", "device=cpu")


def write_tiny_checkpoint(path: Path, shapes_root: Path, steps: int = 1) -> DictConfig:
    """Train the tiny detector for ``steps`` SGD steps and save it as a training checkpoint."""
    torch.manual_seed(0)
    cfg = tiny_train_config(shapes_root)
    dataset = build_dataset(cfg.dataset, "train")
    model = build_model(cfg.model, num_classes=len(dataset.class_names))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _, batch in zip(range(steps), build_train_loader(cfg.dataset, batch_size=2, seed=0)):
        loss = sum(model(batch.images, batch.image_sizes, batch.targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": {}, "scaler": {},
         "iteration": steps, "rng": {}, "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
         "class_names": dataset.class_names, "category_ids": dataset.category_ids, "best_metric": None},  # fmt: skip
        path,
    )
    return cfg
