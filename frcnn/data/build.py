"""``build_dataset``: the dataset of a ``dataset`` config node and split."""

from __future__ import annotations

import os

from hydra.utils import to_absolute_path

from frcnn.data.coco import COCODetection
from frcnn.data.config import DatasetFormat, Split
from frcnn.data.dataset import DetectionDataset
from frcnn.data.shapes import generate_shapes
from frcnn.data.transforms import build_transform
from frcnn.data.voc import VOCDetection
from frcnn.utils.settings import plain


def resolve_path(path: str, base: str | None = None) -> str:
    """Absolute ``path``: relative ones are taken from ``base``, or else from the directory
    the command was started in (Hydra's original working directory)."""
    if os.path.isabs(path):
        return path
    return os.path.join(base, path) if base is not None else to_absolute_path(path)


def _uses_root(cfg) -> bool:
    """Whether any file of the dataset is found through ``root`` (COCO files may all be absolute)."""
    if cfg.format == DatasetFormat.voc:
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
    decoded lazily in ``ds[i]``.
    """
    train = Split(split) == Split.train
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
    if cfg.format == DatasetFormat.voc:
        return VOCDetection(root, list(cfg.train_sets if train else cfg.test_sets), **common)
    files = cfg.train if train else cfg.test
    if files.images is None or files.annotations is None:
        raise ValueError(f"dataset.{split}.images and dataset.{split}.annotations must be set for COCO-format data")
    return COCODetection(resolve_path(files.annotations, root), resolve_path(files.images, root), **common)
