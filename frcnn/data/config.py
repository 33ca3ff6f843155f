"""Schema of the ``dataset`` config node (one superset dataclass for shapes, VOC and COCO).

The group files ``configs/dataset/{shapes,voc,coco}.yaml`` set the values that differ from these
defaults; an unknown key or a value of the wrong type is rejected by Hydra, a value outside its
declared range by :func:`frcnn.utils.settings.check_settings`.
Relative paths (``root``, ``train.images``, ...) are relative to the directory the command
was started from; ``train``/``test`` file paths are relative to ``root`` unless absolute.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Optional

from frcnn.utils.settings import FRACTION, NONNEGATIVE, OPEN_FRACTION, POSITIVE, POSITIVE_FRACTION, setting

SHAPES_CLASSES = ("circle", "square", "triangle")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


class DatasetFormat(StrEnum):
    voc = "voc"  # VOCdevkit tree: Annotations/*.xml, JPEGImages/, ImageSets/Main/<split>.txt
    coco = "coco"  # an images folder + an instances_*.json file
    yolo = "yolo"  # Ultralytics: data.yaml, images/<split>/, labels/<split>/*.txt (class cx cy w h, normalised)
    labelme = "labelme"  # a folder of LabelMe JSON files (one per image), splits as subfolders
    cvat = "cvat"  # CVAT for images 1.1: annotations.xml + images/, splits as the images' subsets
    auto = "auto"  # whichever of these root holds (frcnn.data.detect)


class Split(StrEnum):
    train = "train"
    test = "test"


class Sampler(StrEnum):
    """Which training images an epoch holds (:mod:`frcnn.data.sampling`); both are aspect-ratio grouped."""

    uniform = "uniform"  # every image once per epoch
    repeat_factor = "repeat_factor"  # LVIS repeat-factor sampling: images of rare classes repeated


class InvalidBoxPolicy(StrEnum):
    """What happens to a degenerate (x2 <= x1 or y2 <= y1) or out-of-image box."""

    error = "error"  # refuse to build the dataset, naming every such box
    clip = "clip"  # clip to the image; boxes still degenerate after clipping are dropped
    drop = "drop"  # drop the box


class UnlistedClassPolicy(StrEnum):
    """What happens to an object whose class is not in ``dataset.classes``."""

    error = "error"  # refuse the dataset, naming every such object (catches a misspelt class name)
    ignore = "ignore"  # leave the object out: train and evaluate on a subset of the dataset's classes


class AugmentationPolicy(StrEnum):
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

    images: Optional[str] = setting(None, "folder the annotation file's file_name entries are in")
    annotations: Optional[str] = setting(None, "instances_*.json")


@dataclass
class ShapesConfig:
    """Generation parameters of the synthetic shapes dataset (``name: shapes``)."""

    ORDERED: ClassVar = (("min_image_size", "max_image_size"), ("min_object_size", "max_object_size"))

    num_train: int = setting(1000, "training images", POSITIVE)
    num_test: int = setting(200, "test images", POSITIVE)
    min_image_size: int = setting(128, "each image side is drawn uniformly from [min, max] pixels", POSITIVE)
    max_image_size: int = setting(192, "see min_image_size", POSITIVE)
    max_objects: int = setting(4, "a non-empty image holds 1..max_objects shapes", POSITIVE)
    empty_fraction: float = setting(0.05, "fraction of images without any object", FRACTION)
    min_object_size: float = setting(0.2, "object side as a fraction of the image's short side", POSITIVE_FRACTION)
    max_object_size: float = setting(0.6, "see min_object_size", POSITIVE_FRACTION)
    min_visible: float = setting(0.6, "a placement hiding more than 1 - min_visible of an object is redrawn", FRACTION)
    noise_std: float = setting(6.0, "Gaussian pixel noise on the background (0..255 scale)", NONNEGATIVE)


@dataclass
class DatasetConfig:
    """The ``dataset`` node. Defaults are the synthetic shapes dataset."""

    name: str = setting("shapes", "shapes (generated on first use) | voc | coco | any custom name")
    format: DatasetFormat = setting(DatasetFormat.voc, "voc | coco: the layout of root")
    root: str = setting("data/shapes", "the dataset's folder")
    classes: Optional[list[str]] = setting(
        list(SHAPES_CLASSES), "class names in label order (null: VOC's 20, or a COCO file's categories)"
    )
    train_sets: list[str] = setting(
        ["train"],
        'VOC: "YEAR-SPLIT" (root/VOC<YEAR>/ImageSets/Main/<SPLIT>.txt) or "SPLIT" (root itself); YOLO: data.yaml '
        "split keys; LabelMe: subfolders of root (. for root itself); CVAT: image subsets",
    )
    test_sets: list[str] = setting(["test"], "as train_sets, for the test split")
    use_difficult: bool = setting(True, 'keep VOC "difficult" objects in the training targets')
    occluded_as_difficult: bool = setting(False, "CVAT: occluded objects count as difficult (VOC metric: ignored)")
    val_fraction: float = setting(
        0.1, "dataset=auto without a validation split: the share of images held out for it", OPEN_FRACTION
    )
    split_file: Optional[str] = setting(
        None, "the held-out split's image lists (JSON; train.py: its run folder's dataset_split.json)"
    )
    train: SplitFilesConfig = field(default_factory=lambda: SplitFilesConfig("JPEGImages", "coco/instances_train.json"))
    test: SplitFilesConfig = field(default_factory=lambda: SplitFilesConfig("JPEGImages", "coco/instances_test.json"))
    invalid_boxes: InvalidBoxPolicy = setting(InvalidBoxPolicy.error, "error | clip | drop")
    unlisted_classes: UnlistedClassPolicy = setting(
        UnlistedClassPolicy.error, "objects of classes not in classes: error | ignore (a subset of the classes)"
    )
    min_size: list[int] = setting([128], "training short side, one drawn per image", POSITIVE.for_each())
    test_min_size: int = setting(128, "test short side", POSITIVE)
    max_size: int = setting(256, "the long side never exceeds this after resizing", POSITIVE)
    flip_prob: float = setting(0.5, "horizontal flip probability (train only)", FRACTION)
    augmentation: AugmentationPolicy = setting(
        AugmentationPolicy.hflip, "training augmentation: hflip | multiscale | lsj | ssd | ssdlite (test: resize only)"
    )
    size_divisibility: int = setting(32, "batches are zero-padded to a multiple of this", POSITIVE)
    # compile=true: each padded side is one of this many lengths from the shortest resize to
    # max_size, so that a compiled model meets a handful of batch shapes.
    size_buckets: int = setting(4, "compile=true: padded side lengths per batch dimension", POSITIVE)
    sampler: Sampler = setting(Sampler.uniform, "training images per epoch: uniform | repeat_factor (rare classes)")
    repeat_threshold: float = setting(
        0.001, "repeat_factor: a class in fewer than this fraction of images is repeated", POSITIVE_FRACTION
    )
    num_workers: int = setting(2, "DataLoader worker processes (0: load in the main process)", NONNEGATIVE)
    seed: int = setting(0, "shapes: generation seed; val_fraction: the held-out split's seed", NONNEGATIVE)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
