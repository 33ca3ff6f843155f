"""The detector of a training checkpoint, rebuilt for inference."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from frcnn.models import FasterRCNN, build_model
from frcnn.checkpoint.fit import load_checkpoint_weights

logger = logging.getLogger(__name__)


def model_from_checkpoint(checkpoint: dict, model_cfg: DictConfig, source: str = "the checkpoint") -> FasterRCNN:
    """Build ``model_cfg``'s detector for the checkpoint's classes and load its weights (eval mode).

    The backbone's initial weights (e.g. ``imagenet``) are not fetched again, since the checkpoint
    replaces them; its norm layers are the ones the run trained with (``norm: auto`` resolved
    as the training run resolved it). Weights that do not fit (a ``model.*`` override of another
    depth) raise an error naming ``source`` and the reason.
    """
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg))
    backbone = model_cfg.backbone
    if backbone.norm == "auto":
        backbone.norm = "bn" if backbone.weights is None else "frozen_bn"
    backbone.weights = None
    model = build_model(model_cfg, num_classes=len(checkpoint["class_names"]))
    load_checkpoint_weights(model, checkpoint, source, model_cfg, len(checkpoint["class_names"]))
    logger.info(
        "loaded a %d-class detector trained for %s iterations", len(checkpoint["class_names"]), checkpoint.get("iteration")
    )
    return model.eval()


def check_classes(checkpoint: dict, class_names: list[str]) -> None:
    """Raise ValueError when the dataset's class list is not the one the model was trained on."""
    if list(checkpoint["class_names"]) != list(class_names):
        raise ValueError(
            f"the checkpoint's classes {list(checkpoint['class_names'])} differ from the dataset's {list(class_names)}"
        )


class ClassSubset(nn.Module):
    """A detector seen through a dataset whose classes are some of the model's, matched by name.

    E.g. torchvision's COCO-trained detector (90 labels, COCO ids, "N/A" at unused ones) on a
    COCO annotation file (80 contiguous labels). The model runs unchanged, so its scores and
    per-class NMS are exactly its own; detections of classes the dataset lacks are dropped and
    labels are renumbered into the dataset's 1..K. Targets (for the validation loss) go the
    other way.

    model_labels: [K] the model's label (1..M) of each dataset class, in the dataset's order.
    """

    def __init__(self, model: nn.Module, model_labels: list[int], num_model_classes: int):
        super().__init__()
        self.model = model
        to_dataset = torch.zeros(num_model_classes + 1, dtype=torch.int64)  # 0: not in the dataset
        to_dataset[torch.as_tensor(model_labels)] = torch.arange(1, len(model_labels) + 1)
        self.register_buffer("to_dataset", to_dataset, persistent=False)
        self.register_buffer("to_model", torch.as_tensor([0, *model_labels], dtype=torch.int64), persistent=False)

    def forward(self, images: torch.Tensor, image_sizes, targets: list[dict] | None = None):
        if targets is not None:
            targets = [{**t, "labels": self.to_model[t["labels"]]} for t in targets]
        output = self.model(images, image_sizes, targets)
        detections, losses = output if isinstance(output, tuple) else (output, None)
        relabelled = []
        for det in detections:
            labels = self.to_dataset[det["labels"]]
            keep = labels > 0
            relabelled.append({**{k: v[keep] for k, v in det.items()}, "labels": labels[keep]})
        return relabelled if losses is None else (relabelled, losses)


def model_for_dataset(model: nn.Module, checkpoint: dict, class_names: list[str]) -> nn.Module:
    """``model`` for a dataset of ``class_names``: itself when the classes are the checkpoint's,
    a :class:`ClassSubset` when each dataset class is exactly one of them by name; else a
    ValueError naming both lists."""
    own = list(checkpoint["class_names"])
    if own == list(class_names):
        return model
    positions = {name: [i for i, own_name in enumerate(own, start=1) if own_name == name] for name in class_names}
    if all(len(found) == 1 for found in positions.values()):
        logger.info("the dataset's %d classes are %d of the model's %d: evaluating those, by name",
                    len(class_names), len(class_names), len(own))  # fmt: skip
        return ClassSubset(model, [positions[name][0] for name in class_names], len(own))
    missing = [name for name, found in positions.items() if len(found) != 1]
    raise ValueError(
        f"the checkpoint's classes {own} differ from the dataset's {list(class_names)} "
        f"(not exactly once among the model's: {missing})"
    )
