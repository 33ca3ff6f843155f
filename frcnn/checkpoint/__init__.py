"""Checkpoints: what one holds, writing it (staged, committed, atomic), reading it
(``weights_only``), fitting its weights to a model, restoring a detector from it, and
torchvision's trained detectors as checkpoints (``torchvision:<name>``)."""
