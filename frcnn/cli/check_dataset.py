"""Validate a whole dataset before training; exits non-zero when it finds errors.

Parses every annotation, checks every box against ``dataset.invalid_boxes`` and decodes
every image, then prints a per-class count table and every problem found (file, object,
reason) for each split, warnings included (duplicate boxes, YOLO labels without an image, classes
without a box or rare ones); for the training split, a table of its box sizes against the anchor
sizes of the ``model`` (the training default unless ``model=...``/``model.anchors.*`` say otherwise)::

    python scripts/check_dataset.py dataset=voc dataset.root=data/VOCdevkit
    python scripts/check_dataset.py dataset=coco splits=[test] images=false
    python scripts/check_dataset.py dataset=voc model=resnet50_fpn
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from frcnn.cli.errors import run_command
from frcnn.config import CheckDatasetConfig, config_dir, typed
from frcnn.data.anchor_fit import AnchorSpec
from frcnn.data.check import check_dataset, format_report
from frcnn.models.config import Architecture, LevelSizes, ModelConfig
from frcnn.models.fpn import fpn_backbone_class

logger = logging.getLogger("check_dataset")


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="check_dataset")
def main(raw: DictConfig) -> None:
    cfg: CheckDatasetConfig = typed(raw)
    reports = check_dataset(cfg.dataset, cfg.splits, cfg.images, cfg.num_workers, anchor_spec(cfg.model))
    for report in reports:
        logger.info(format_report(report))
    num_errors = sum(len(r.errors) for r in reports)
    if num_errors:
        logger.error("%s: %d errors", cfg.dataset.name, num_errors)
        sys.exit(1)
    logger.info("%s: no errors", cfg.dataset.name)


def anchor_spec(cfg: ModelConfig) -> AnchorSpec:
    """The anchors of the model ``cfg`` describes, as :func:`frcnn.models.rpn.build_rpn` makes them:
    C4 one level of ``anchors.base_size``; FPN one per pyramid level, the base size doubled at each
    (``level_sizes: doubling``) or the same (``same``)."""
    anchors = cfg.anchors
    levels = 1 if cfg.architecture == Architecture.c4 else len(fpn_backbone_class(cfg.backbone).strides)
    growth = 2 if anchors.level_sizes == LevelSizes.doubling else 1
    return AnchorSpec(
        base_sizes=tuple(float(anchors.base_size * growth**level) for level in range(levels)),
        scales=tuple(anchors.scales),
        ratios=tuple(anchors.ratios),
        round_to_pixels=anchors.round,
        pos_iou_thresh=cfg.rpn.pos_iou_thresh,
    )


def command() -> None:
    """``python scripts/check_dataset.py`` and the ``frcnn-check-dataset`` console command."""
    run_command(main)


if __name__ == "__main__":
    command()
