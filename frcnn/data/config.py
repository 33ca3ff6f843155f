"""Schema of the ``dataset`` config node (one superset dataclass for shapes, VOC and COCO).

The group files ``configs/dataset/{shapes,voc,coco}.yaml`` are plain values merged into
:class:`DatasetConfig`; an unknown key or a value of the wrong type is rejected by Hydra.
Relative paths (``root``, ``train.images``, ...) are relative to the directory the command
was started from; ``train``/``test`` file paths are relative to ``root`` unless absolute.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

SHAPES_CLASSES = ("circle", "square", "triangle")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


class DatasetFormat(str, Enum):
    voc = "voc"  # VOCdevkit tree: Annotations/*.xml, JPEGImages/, ImageSets/Main/<split>.txt
    coco = "coco"  # an images folder + an instances_*.json file


class InvalidBoxPolicy(str, Enum):
    """What happens to a degenerate (x2 <= x1 or y2 <= y1) or out-of-image box."""

    error = "error"  # refuse to build the dataset, naming every such box
    clip = "clip"  # clip to the image; boxes still degenerate after clipping are dropped
    drop = "drop"  # drop the box


class UnlistedClassPolicy(str, Enum):
    """What happens to an object whose class is not in ``dataset.classes``."""

    error = "error"  # refuse the dataset, naming every such object (catches a misspelt class name)
    ignore = "ignore"  # leave the object out: train and evaluate on a subset of the dataset's classes


class AugmentationPolicy(str, Enum):
    """The training augmentation, by the names of torchvision's detection references (presets.py);
    :func:`frcnn.data.transforms.build_transform` says how each composes with the resize settings."""

    hflip = "hflip"  # resize (short side one of min_size, long side <= max_size) + flip: the default
    multiscale = "multiscale"  # RandomShortestSize(min_size, max_size) + flip
    lsj = "lsj"  # large-scale jitter: ScaleJitter + FixedSizeCrop to a max_size square + flip
    ssd = "ssd"  # photometric distortion, zoom out, IoU crop, then the resize + flip
    ssdlite = "ssdlite"  # IoU crop, then the resize + flip


@dataclass
class SplitFilesConfig:
    """COCO-format files of one split (relative to ``root`` unless absolute)."""

    images: Optional[str] = None  # folder the annotation file's ``file_name`` entries are in
    annotations: Optional[str] = None  # instances_*.json


@dataclass
class ShapesConfig:
    """Generation parameters of the synthetic shapes dataset (``name: shapes``)."""

    num_train: int = 1000
    num_test: int = 200
    min_image_size: int = 128  # each image side is drawn uniformly from [min, max] pixels
    max_image_size: int = 192
    max_objects: int = 4  # a non-empty image holds 1..max_objects shapes
    empty_fraction: float = 0.05  # fraction of images without any object
    min_object_size: float = 0.2  # object side as a fraction of the image's short side
    max_object_size: float = 0.6
    min_visible: float = 0.6  # a placement hiding more than 1 - min_visible of an object is redrawn
    noise_std: float = 6.0  # Gaussian pixel noise on the background (0..255 scale)


@dataclass
class DatasetConfig:
    """The ``dataset`` node. Defaults are the synthetic shapes dataset."""

    name: str = "shapes"  # shapes (generated on first use) | voc | coco | any custom name
    format: DatasetFormat = DatasetFormat.voc
    root: str = "data/shapes"
    classes: Optional[list[str]] = field(default_factory=lambda: list(SHAPES_CLASSES))
    # VOC: "YEAR-SPLIT" (root/VOC<YEAR>/ImageSets/Main/<SPLIT>.txt) or "SPLIT" (root itself).
    train_sets: list[str] = field(default_factory=lambda: ["train"])
    test_sets: list[str] = field(default_factory=lambda: ["test"])
    use_difficult: bool = True  # keep VOC "difficult" objects in the training targets
    train: SplitFilesConfig = field(default_factory=lambda: SplitFilesConfig("JPEGImages", "coco/instances_train.json"))
    test: SplitFilesConfig = field(default_factory=lambda: SplitFilesConfig("JPEGImages", "coco/instances_test.json"))
    invalid_boxes: InvalidBoxPolicy = InvalidBoxPolicy.error
    # Objects of classes not in `classes`: error | ignore (a subset of the dataset's classes).
    unlisted_classes: UnlistedClassPolicy = UnlistedClassPolicy.error
    min_size: list[int] = field(default_factory=lambda: [128])  # train: one drawn per image
    test_min_size: int = 128
    max_size: int = 256  # the long side never exceeds this after resizing
    flip_prob: float = 0.5  # horizontal flip probability (train only)
    # Training augmentation policy: hflip | multiscale | lsj | ssd | ssdlite (test images are only resized).
    augmentation: AugmentationPolicy = AugmentationPolicy.hflip
    size_divisibility: int = 32  # batches are zero-padded to a multiple of this
    # compile=true: each padded side is one of this many lengths from the shortest resize to
    # max_size, so that a compiled model meets a handful of batch shapes.
    size_buckets: int = 4
    num_workers: int = 2  # DataLoader worker processes (0: load in the main process)
    seed: int = 0  # shapes: generation seed
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
