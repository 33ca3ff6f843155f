"""Convert a dataset, every split of it, to the COCO, VOC or YOLO layout, without decoding an image.

Reads the training split and the test split (when the dataset has one) as training reads them (by
default ``dataset=auto``: whichever readable layout ``dataset.root`` holds; any dataset group and its
keys work too) and writes them under ``output`` as ``train`` and ``val``, images hard-linked
(:mod:`frcnn.data.convert` says what goes where), in the layout ``dataset=auto`` reads back::

    python scripts/convert_dataset.py dataset.root=data/mydata output=data/mydata_coco format=coco
    python scripts/convert_dataset.py dataset=voc dataset.root=data/VOCdevkit dataset.classes=null \\
        dataset.train_sets=[2007-trainval] dataset.test_sets=[2007-test] output=data/voc07_yolo format=yolo

A non-empty ``output`` is refused unless ``overwrite=true``, which replaces the files written and
keeps the folder's others. Prints one line per split written and a last one.
"""

import logging
import os

import hydra
from omegaconf import DictConfig

from frcnn.cli.errors import run_command
from frcnn.config import config_dir, typed
from frcnn.config.commands import ConvertDatasetConfig
from frcnn.data.build import resolve_path
from frcnn.data.convert import check_output, convert_splits, read_splits

logger = logging.getLogger("convert_dataset")


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="convert_dataset")
def main(raw: DictConfig) -> None:
    cfg: ConvertDatasetConfig = typed(raw)
    output = resolve_path(cfg.output)
    check_output(output, cfg.overwrite, resolve_path(cfg.dataset.root))
    written = convert_splits(read_splits(cfg.dataset), output, cfg.format)
    for split in written:
        where = os.path.join(cfg.output, split.path)
        logger.info("%s: %d images, %d boxes -> %s", split.split, split.num_images, split.num_boxes, where)
    images, boxes = sum(s.num_images for s in written), sum(s.num_boxes for s in written)
    logger.info("%s: a %s dataset of %d images, %d boxes; read it with dataset.root=%s", cfg.output, cfg.format,
                images, boxes, cfg.output)  # fmt: skip


def command() -> None:
    """``python scripts/convert_dataset.py`` and the ``frcnn-convert-dataset`` console command."""
    run_command(main)


if __name__ == "__main__":
    command()
