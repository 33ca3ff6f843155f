"""Scoring a detector on a dataset whose classes are some of the model's, matched by name.

E.g. torchvision's COCO-trained detector (90 labels, COCO ids, "N/A" at unused ones) on a COCO
annotation file (80 contiguous labels), or on a file of three of its classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)


def check_classes(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> None:
    """Raise ValueError when the dataset's class list is not the one the model was trained on."""
    if list(model_classes) != list(dataset_classes):
        raise ValueError(f"the model's classes {list(model_classes)} differ from the dataset's {list(dataset_classes)}")


class ClassSubset(nn.Module):
    """A detector seen through a dataset whose classes are some of the model's.

    The model runs unchanged, so its scores and per-class NMS are exactly its own; detections of
    classes the dataset lacks are dropped and labels are renumbered into the dataset's 1..K.
    Targets (for the validation loss) go the other way.

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


def model_for_dataset(model: nn.Module, model_classes: Sequence[str], dataset_classes: Sequence[str]) -> nn.Module:
    """``model`` (trained on ``model_classes``) for a dataset of ``dataset_classes``: itself when
    the lists are equal, a :class:`ClassSubset` when each dataset class is exactly one of the
    model's by name; else a ValueError naming both lists."""
    own, wanted = list(model_classes), list(dataset_classes)
    if own == wanted:
        return model
    positions = {name: [i for i, own_name in enumerate(own, start=1) if own_name == name] for name in wanted}
    if all(len(found) == 1 for found in positions.values()):
        logger.info("the dataset's %d classes are %d of the model's %d: evaluating those, by name",
                    len(wanted), len(wanted), len(own))  # fmt: skip
        return ClassSubset(model, [positions[name][0] for name in wanted], len(own))
    missing = [name for name, found in positions.items() if len(found) != 1]
    raise ValueError(
        f"the model's classes {own} differ from the dataset's {wanted} (not exactly once among the model's: {missing})"
    )
