"""``build_dataset``: the dataset of a ``dataset`` config node and split."""

from __future__ import annotations

import copy
import functools
import logging
import os

from hydra.utils import to_absolute_path

from frcnn.data.coco import COCODetection
from frcnn.data.config import DatasetFormat, Split
from frcnn.data.cvat import parse_cvat
from frcnn.data.dataset import DetectionDataset
from frcnn.data.detect import detect_layout
from frcnn.data.holdout import held_out_split
from frcnn.data.labelme import parse_labelme
from frcnn.data.parsed import ParsedDetection, ParsedSplit
from frcnn.data.shapes import generate_shapes
from frcnn.data.transforms import build_transform
from frcnn.data.voc import VOCDetection
from frcnn.data.yolo import parse_yolo
from frcnn.utils.settings import plain

logger = logging.getLogger(__name__)


def resolve_path(path: str, base: str | None = None) -> str:
    """Absolute ``path``: relative ones are taken from ``base``, or else from the directory
    the command was started in (Hydra's original working directory)."""
    if os.path.isabs(path):
        return path
    return os.path.join(base, path) if base is not None else to_absolute_path(path)


def _uses_root(cfg) -> bool:
    """Whether any file of the dataset is found through ``root`` (COCO files may all be absolute)."""
    if cfg.format != DatasetFormat.coco:
        return True
    paths = [getattr(files, kind) for files in (cfg.train, cfg.test) for kind in ("images", "annotations")]
    return any(path is not None and not os.path.isabs(path) for path in paths)


def prepare_root(cfg) -> str:
    """The absolute dataset root; the shapes dataset is generated there first if needed.
    Raises FileNotFoundError naming ``dataset.root`` when any other dataset's root is missing."""
    root = resolve_path(cfg.root)
    if cfg.name == "shapes":
        generate_shapes(root, seed=cfg.seed, **plain(cfg.shapes))
    elif not os.path.isdir(root) and _uses_root(cfg):
        raise FileNotFoundError(
            f"dataset.root={cfg.root}: no such folder ({root}); set dataset.root=DIR to where the {cfg.name} data is"
        )
    return root


def build_dataset(cfg, split: Split | str) -> DetectionDataset:
    """The ``split`` ("train" | "test") dataset of a ``dataset`` config (DictConfig or
    :class:`~frcnn.data.config.DatasetConfig`).

    The shapes dataset is generated into ``cfg.root`` on first use. Annotations are parsed
    and validated here (bad data raises DatasetError before any training starts); images are
    decoded lazily in ``ds[i]``. ``dataset=auto`` on a layout without a validation split holds
    ``cfg.val_fraction`` of the training split out for it (:mod:`frcnn.data.holdout`).
    """
    train = Split(split) == Split.train
    layout = None
    if cfg.format == DatasetFormat.auto:
        layout, cfg = resolve_layout(cfg)
    held_out = layout is not None and layout.splits[1] is None
    root = prepare_root(cfg)
    common = dict(
        class_names=list(cfg.classes) if cfg.classes is not None else None,
        invalid_boxes=cfg.invalid_boxes,
        unlisted_classes=cfg.unlisted_classes,
        transform=build_transform(cfg, train),
        train=train,
        use_difficult=cfg.use_difficult,
        name=f"{cfg.name} {split}",  # for log messages
    )
    dataset = _read(cfg, root, train or held_out, split, common)
    if held_out:
        kept = held_out_split(dataset.index, cfg.val_fraction, cfg.seed, cfg.split_file)[0 if train else 1]
        dataset = dataset.select_images(kept)
    if layout is not None:
        names = ", ".join(dataset.class_names)
        logger.info("%s; %s: %d images, %d boxes, %d classes (%s)", layout.describe(cfg.root), split, len(dataset),
                    dataset.index.num_boxes, len(dataset.class_names), names)  # fmt: skip
    return dataset


def split_sets(cfg, train: bool) -> list[str]:
    """The sets (VOC sets, YOLO split keys, LabelMe folders, CVAT subsets) of the split; an empty
    list is a ValueError naming the key."""
    key = "train_sets" if train else "test_sets"
    sets = list(cfg.train_sets if train else cfg.test_sets)
    if not sets:
        raise ValueError(f"dataset.{key} is empty: name the {cfg.format} splits to read")
    return sets


def parse_split(cfg, root: str, train: bool) -> ParsedSplit:
    """The YOLO, LabelMe or CVAT split of ``cfg`` as its parser reads it (policies not yet applied)."""
    classes = list(cfg.classes) if cfg.classes is not None else None
    sets = split_sets(cfg, train)
    if cfg.format == DatasetFormat.yolo:
        return parse_yolo(root, sets, classes)
    if cfg.format == DatasetFormat.labelme:
        return parse_labelme(root, sets, classes)
    return parse_cvat(root, sets, classes, occluded_as_difficult=cfg.occluded_as_difficult)


def _read(cfg, root: str, train: bool, split: str, common: dict) -> DetectionDataset:
    """The reader of ``cfg.format`` on ``root``'s split."""
    if cfg.format == DatasetFormat.voc:
        return VOCDetection(root, split_sets(cfg, train), **common)
    if cfg.format in (DatasetFormat.yolo, DatasetFormat.labelme, DatasetFormat.cvat):
        del common["class_names"]  # the parser selected them
        return ParsedDetection(parse_split(cfg, root, train), **common)
    files = cfg.train if train else cfg.test
    if files.images is None or files.annotations is None:
        raise ValueError(f"dataset.{split}.images and dataset.{split}.annotations must be set for COCO-format data")
    return COCODetection(resolve_path(files.annotations, root), resolve_path(files.images, root), **common)


def resolve_layout(cfg):
    """(the layout ``dataset=auto`` finds in ``cfg.root``, ``cfg`` with its keys: the format, the
    split sets or files, and the classes where the layout has no list of its own and ``cfg`` none)."""
    layout = detect_layout(resolve_path(cfg.root))
    resolved = copy.deepcopy(cfg)
    keys = {"format": layout.format, **layout.keys}
    if cfg.classes is None and layout.class_names is not None:
        keys["classes"] = layout.class_names
    for key, value in keys.items():
        *parents, last = key.split(".")
        node = functools.reduce(getattr, parents, resolved)
        setattr(node, last, value)
    return layout, resolved
