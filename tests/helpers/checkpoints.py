"""Checkpoints for tests: stand-ins of one tensor, tiny trained ones (a few steps of the
debug=tiny detector), and shapes test batches."""

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from frcnn.checkpoint.format import Checkpoint, TrainingState
from frcnn.checkpoint.io import save_checkpoint
from frcnn.data import build_dataset, build_train_loader, collate
from frcnn.models import build_model
from tests.helpers.configs import compose_train

# Test models: name -> overrides of the debug=tiny config.
VARIANTS = {
    "roi_align": ["model.roi_head.pooler=roi_align"],
    "roi_pool": ["model.roi_head.pooler=roi_pool"],
    # ResNet-18-FPN with narrow pyramid levels and box head (torchvision's FPN settings otherwise).
    "fpn": ["model=resnet50_fpn", "model.backbone.depth=18", "model.fpn_channels=32", "model.roi_head.mlp_dim=64"],
    # The same with the v2 parts: BatchNorm in the pyramid and a 4-conv + 1-fc box head, 2-conv RPN head.
    "fpn_v2": ["model=resnet50_fpn_v2", "model.backbone.depth=18", "model.fpn_channels=32",
               "model.roi_head.mlp_dim=64", "model.roi_head.conv_dims=[32,32,32,32]"],
    # MobileNetV3-Large-FPN (three levels at strides 32, 32, 64) with narrow pyramid levels and box head.
    "mobilenet": ["model=mobilenet_v3_large_fpn", "model.fpn_channels=32", "model.roi_head.mlp_dim=64"],
    # The same with the 320 one's 150 test-time proposals (debug=tiny's are fewer).
    "mobilenet_320": ["model=mobilenet_v3_large_320_fpn", "model.fpn_channels=32", "model.roi_head.mlp_dim=64",
                      "model.rpn.pre_nms_top_n_test=150", "model.rpn.post_nms_top_n_test=150"],
}  # fmt: skip


def stand_in_checkpoint(iteration: int, weight: float = 1.0, resumable: bool = False) -> Checkpoint:
    """A checkpoint of one weight ``w`` = [weight, weight] after ``iteration`` steps (with
    ``resumable``, an SGD training state too): for tests of files, not of models."""
    model = {"w": torch.full((2,), weight)}
    training = None
    if resumable:
        optimizer = torch.optim.SGD([torch.nn.Parameter(model["w"].clone())], lr=0.1, momentum=0.9)
        training = TrainingState(
            optimizer=optimizer.state_dict(),
            scheduler={"last_epoch": iteration},
            scaler={},
            rng=[{"torch": torch.get_rng_state()}],
        )
    return Checkpoint(
        model=model,
        config={"model": {}, "dataset": {}, "train": {}},
        class_names=["a", "b"],
        category_ids=[1, 2],
        iteration=iteration,
        training=training,
    )


def tiny_config(shapes_root: Path, *overrides: str) -> DictConfig:
    """debug=tiny (a dozen 64-96 px shapes images, ResNet-18 C4 from scratch) under shapes_root, on the CPU."""
    return compose_train("debug=tiny", f"dataset.root={shapes_root}", "device=cpu", *overrides)


def train_tiny_checkpoint(
    path: Path, cfg: DictConfig, steps: int = 1, lr: float = 0.01, optimizer: str = "sgd"
) -> DictConfig:
    """Train the detector of ``cfg`` for ``steps`` steps (SGD with momentum 0.9, or AdamW) from
    seed 0 and save its weights as a checkpoint at ``path`` (as ``best.pt`` holds them: what
    evaluate, predict and export read); returns ``cfg``."""
    torch.manual_seed(0)
    dataset = build_dataset(cfg.dataset, "train")
    model = build_model(cfg.model, num_classes=len(dataset.class_names))
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _, batch in zip(range(steps), build_train_loader(cfg.dataset, batch_size=2, seed=0)):
        loss = sum(model(batch.images, batch.image_sizes, batch.targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    save_checkpoint(
        Checkpoint(
            model=model.state_dict(),
            config=config,
            class_names=dataset.class_names,
            category_ids=dataset.category_ids,
            iteration=steps,
        ),
        path,
    )
    return cfg


def write_tiny_checkpoint(path: Path, shapes_root: Path, steps: int = 1) -> DictConfig:
    """The debug=tiny detector under ``shapes_root`` after ``steps`` SGD steps, saved at ``path``."""
    return train_tiny_checkpoint(path, tiny_config(shapes_root), steps)


def shapes_batch(cfg: DictConfig, indices: list[int]):
    """Shapes test images ``indices`` (test transform: resized, normalised), padded into one Batch."""
    dataset = build_dataset(cfg.dataset, "test")
    return collate([dataset[index] for index in indices], cfg.dataset.size_divisibility)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """(checkpoint path, its train config) of a 1-step tiny shapes run, made once per session."""
    directory = tmp_path_factory.mktemp("tiny_run")
    cfg = write_tiny_checkpoint(directory / "last.pt", directory / "shapes")
    return directory / "last.pt", cfg


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """The tiny shapes set of the exported test models."""
    return tmp_path_factory.mktemp("shapes_tiny")


@pytest.fixture(scope="session")
def exported(tmp_path_factory, shapes_root):
    """``exported(variant) -> (checkpoint path, train config, export folder)``, made once per
    variant of :data:`VARIANTS`. The RoIAlign model is trained a little longer (16 AdamW steps):
    its mAP is compared too."""
    from frcnn.export import export_checkpoint

    made = {}

    def make(variant: str):
        if variant not in made:
            directory = tmp_path_factory.mktemp(f"export_{variant}")
            cfg = tiny_config(shapes_root, *VARIANTS[variant])
            steps, lr = {
                "roi_align": (16, 4e-3),
                "fpn": (2, 1e-3),
                "fpn_v2": (2, 1e-3),
                "mobilenet": (20, 2e-3),
                # 24, not 20: after 20 steps two overlapping proposals tie in objectness to float32
                # noise on some CPUs, and ONNX Runtime and PyTorch keep a different one of them.
                "mobilenet_320": (24, 2e-3),
            }.get(variant, (2, 1e-2))
            train_tiny_checkpoint(directory / "last.pt", cfg, steps=steps, lr=lr, optimizer="adamw")
            export_checkpoint(directory / "last.pt", directory / "exported")
            made[variant] = (directory / "last.pt", cfg, directory / "exported")
        return made[variant]

    return make
