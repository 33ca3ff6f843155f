"""Tiny trained checkpoints and shapes test batches for the export tests."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import frcnn.config  # noqa: F401  (registers train_schema)
from frcnn.data import build_dataset, build_train_loader, collate
from frcnn.models import build_model

REPO = Path(__file__).resolve().parents[2]
# Exported test models: name -> overrides of the debug=tiny config.
VARIANTS = {
    "roi_align": ["model.roi_head.pooler=roi_align"],
    "roi_pool": ["model.roi_head.pooler=roi_pool"],
    # ResNet-18-FPN with narrow pyramid levels and box head (torchvision's FPN settings otherwise).
    "fpn": ["model=resnet50_fpn", "model.backbone.depth=18", "model.fpn_channels=32", "model.roi_head.mlp_dim=64"],
}


def tiny_config(shapes_root: Path, *overrides: str) -> DictConfig:
    """debug=tiny (a dozen 64-96 px shapes images, ResNet-18 C4 from scratch) under shapes_root."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return compose("train", overrides=["debug=tiny", f"dataset.root={shapes_root}", "device=cpu", *overrides])


def train_tiny_checkpoint(path: Path, cfg: DictConfig, steps: int, lr: float = 0.01) -> None:
    """Train the tiny detector of ``cfg`` for ``steps`` AdamW steps; save a training checkpoint."""
    torch.manual_seed(0)
    dataset = build_dataset(cfg.dataset, "train")
    model = build_model(cfg.model, num_classes=len(dataset.class_names))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _, batch in zip(range(steps), build_train_loader(cfg.dataset, batch_size=2, seed=0)):
        loss = sum(model(batch.images, batch.image_sizes, batch.targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": {}, "scaler": {},
         "iteration": steps, "rng": {}, "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
         "class_names": dataset.class_names, "category_ids": dataset.category_ids, "best_metric": None},  # fmt: skip
        path,
    )


def shapes_batch(cfg: DictConfig, indices: list[int]):
    """Shapes test images ``indices`` (test transform: resized, normalised), padded into one Batch."""
    dataset = build_dataset(cfg.dataset, "test")
    return collate([dataset[index] for index in indices], cfg.dataset.size_divisibility)
