"""Datasets (VOC, COCO, synthetic shapes), box-aware transforms, batching and validation.

Boxes are float32 (x1, y1, x2, y2) in continuous 0-based pixel coordinates; labels are
int64 in 1..K (0 is background) and ``class_names[label - 1]`` names label ``label``.
"""

from frcnn.data.batching import Batch, GroupedBatchSampler, build_test_loader, build_train_loader, collate
from frcnn.data.build import build_dataset
from frcnn.data.config import DatasetConfig
from frcnn.data.dataset import DetectionDataset
from frcnn.data.shapes import generate_shapes
from frcnn.data.validation import DatasetError

__all__ = [
    "Batch",
    "DatasetConfig",
    "DatasetError",
    "DetectionDataset",
    "GroupedBatchSampler",
    "build_dataset",
    "build_test_loader",
    "build_train_loader",
    "collate",
    "generate_shapes",
]
