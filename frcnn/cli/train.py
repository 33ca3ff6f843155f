"""Train a Faster R-CNN detector.

    python scripts/train.py                                  # shapes on the CPU (experiment=shapes_cpu)
    python scripts/train.py experiment=voc0712_r50_c4 dataset.root=/data/VOCdevkit
    torchrun --nproc_per_node=8 scripts/train.py experiment=coco_r50_c4 dataset.root=/data/coco
    python scripts/train.py --cfg job                        # print the resolved config and exit

Every value of configs/train.yaml (and its groups) can be overridden as ``key=value``.
"""

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frcnn.cli.errors import EXIT_STOPPED, run_command
from frcnn.config import config_dir, preset_warning
from frcnn.engine.resume import config_to_resume, with_saved_overrides
from frcnn.engine.trainer import run_training
from frcnn.utils.logs import setup_logging

log = logging.getLogger("train")
REUSED_OVERRIDES: list[str] = []  # a resumed run's saved overrides, put back on the command line


@hydra.main(config_path=str(config_dir()), config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    setup_logging(run_dir / "train.log", rank=int(os.environ.get("RANK", 0)))
    log.info("run directory: %s", run_dir)
    if REUSED_OVERRIDES:
        log.info("train.resume=auto: reusing the run's overrides %s", " ".join(REUSED_OVERRIDES))
    overrides = list(hydra_cfg.overrides.task)
    # train.resume=PATH: the checkpoint's own config, settled before anything is set up for the defaults' one
    cfg, resume_from = config_to_resume(cfg, overrides, run_dir)
    if resume_from is not None:
        log.info("resuming from %s with its config, the command line's overrides on top", resume_from.path)
    else:  # the experiment preset chosen matters only to a config composed from it
        warning = preset_warning(hydra_cfg.runtime.choices.get("experiment"), cfg.dataset.name)
        if warning:
            log.warning(warning)
    outcome = run_training(cfg, run_dir, overrides=overrides, resume_from=resume_from)
    if outcome.stopped:  # saved and resumable, but not finished: a scheduler must be able to tell
        sys.exit(EXIT_STOPPED)


def main_with_saved_overrides() -> None:
    """:func:`main` with a resumed run's saved overrides put back on the command line (read as
    data and checked: :func:`frcnn.engine.resume.with_saved_overrides`)."""
    sys.argv[1:], REUSED_OVERRIDES[:] = with_saved_overrides(sys.argv[1:])
    main()


def command() -> None:
    """``python scripts/train.py`` and the ``frcnn-train`` console command."""
    # Under torchrun only rank 0 keeps a run directory (the others adopt it in train()), so the
    # other ranks do not write Hydra's .hydra/ folder.
    if int(os.environ.get("RANK", "0")) > 0:
        sys.argv.append("hydra.output_subdir=null")
    run_command(main_with_saved_overrides)


if __name__ == "__main__":
    command()
