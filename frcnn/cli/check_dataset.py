"""Validate a whole dataset before training; exits non-zero when it finds errors.

Parses every annotation, checks every box against ``dataset.invalid_boxes`` and decodes
every image, then prints a per-class count table and every problem found (file, object,
reason) for each split::

    python scripts/check_dataset.py dataset=voc dataset.root=data/VOCdevkit
    python scripts/check_dataset.py dataset=coco splits=[test] images=false
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from frcnn.cli.errors import run_command
from frcnn.config import CheckDatasetConfig, config_dir, typed
from frcnn.data.check import check_dataset, format_report

logger = logging.getLogger("check_dataset")


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="check_dataset")
def main(raw: DictConfig) -> None:
    cfg: CheckDatasetConfig = typed(raw)
    reports = check_dataset(cfg.dataset, cfg.splits, cfg.images, cfg.num_workers)
    for report in reports:
        logger.info(format_report(report))
    num_errors = sum(len(r.errors) for r in reports)
    if num_errors:
        logger.error("%s: %d errors", cfg.dataset.name, num_errors)
        sys.exit(1)
    logger.info("%s: no errors", cfg.dataset.name)


def command() -> None:
    """``python scripts/check_dataset.py`` and the ``frcnn-check-dataset`` console command."""
    run_command(main)


if __name__ == "__main__":
    command()
