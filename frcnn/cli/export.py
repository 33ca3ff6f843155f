"""Export a trained detector to ONNX or OpenVINO, in fp32 or int8, for deployment.

    python scripts/export.py checkpoint=outputs/<run>/checkpoints/last.pt output=exported/
    python scripts/export.py checkpoint=... output=exported_ov/ format=openvino precision=int8

Writes ``output/model.onnx`` (one graph for any batch size and image size: NMS and RoI pooling
inside, padded outputs) and ``output/model.json`` (class names, category ids, the preprocessing
the graph expects, thresholds, the frcnn version and the checkpoint's config). Run the file with
``scripts/predict.py onnx=output/model.onnx ...`` or any ONNX Runtime. ``format=openvino`` writes
OpenVINO IR (``model.xml`` + ``model.bin``) instead, run by ``runtime=openvino model=output/model.xml``;
``precision=int8`` quantises (calibrated on ``calibration_images`` training images) and exports only if
the test-split VOC07 mAP drops by at most ``max_map_drop`` (both mAPs go into model.json). A folder that
holds files is written into only with ``overwrite=true``; nothing is left behind by a failed export.
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
    metadata = export_checkpoint(cfg.checkpoint, cfg.output, cfg.opset, cfg.format, cfg.precision,
                                 cfg.calibration_images, cfg.max_map_drop, cfg.threads, cfg.overwrite)  # fmt: skip
    log.info("classes %s; preprocessing %s", metadata.class_names, metadata.preprocessing)


def command() -> None:
    """``python scripts/export.py`` and the ``frcnn-export`` console command."""
    run_command(main)


if __name__ == "__main__":
    command()
