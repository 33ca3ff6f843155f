"""Faults planted in a training run: FasterRCNN.forward wrapped to corrupt chosen training calls."""

import torch

from frcnn.models import FasterRCNN


def forward_with(fault, at: set[int]):
    """FasterRCNN.forward with ``fault(self, losses)`` applied at the given training calls (1-based);
    install with ``monkeypatch.setattr(FasterRCNN, "forward", forward_with(...))``."""
    forward = FasterRCNN.forward
    calls = {"train": 0}

    def patched(self, images, image_sizes, targets=None):
        out = forward(self, images, image_sizes, targets)
        if self.training:
            calls["train"] += 1
            if calls["train"] in at:
                out = fault(self, out)
        return out

    return patched


def nan_rpn_loc(model, losses):
    """A NaN RPN box loss."""
    losses["rpn_loc"] = losses["rpn_loc"] * torch.nan
    return losses
