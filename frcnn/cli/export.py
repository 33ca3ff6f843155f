"""Export a trained detector to ONNX for deployment.

    python scripts/export.py checkpoint=outputs/<run>/checkpoints/last.pt output=exported/

Writes ``output/model.onnx`` (one graph for any batch size and image size: NMS and RoI pooling
inside, padded outputs) and ``output/model.json`` (class names, category ids, the preprocessing
the graph expects, thresholds, the frcnn version and the checkpoint's config). Run the file with
``scripts/predict.py onnx=output/model.onnx ...`` or any ONNX Runtime.
"""

import logging

import hydra
from omegaconf import DictConfig

from frcnn.cli.errors import run_command
from frcnn.config import ExportConfig, config_dir, typed
from frcnn.export import export_checkpoint
from frcnn.utils.logs import setup_logging

log = logging.getLogger("export")


@hydra.main(config_path=str(config_dir()), config_name="export", version_base=None)
def main(raw: DictConfig) -> None:
    setup_logging()
    cfg: ExportConfig = typed(raw)
    metadata = export_checkpoint(cfg.checkpoint, cfg.output, cfg.opset)
    log.info("classes %s; preprocessing %s", metadata.class_names, metadata.preprocessing)


def command() -> None:
    """``python scripts/export.py`` and the ``frcnn-export`` console command."""
    run_command(main)


if __name__ == "__main__":
    command()
