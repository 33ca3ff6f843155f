"""Detect objects in an image or a folder of images with a trained checkpoint.

    python scripts/predict.py checkpoint=outputs/<run>/checkpoints/last.pt input=photos/ output=detections/
    python scripts/predict.py checkpoint=... input=cat.jpg output=out/ score_threshold=0.3 device=cuda
    python scripts/predict.py onnx=exported/model.onnx input=photos/ output=detections/

Writes every image with its detections drawn (class name and score) under its own file name in
``output``, and one ``predictions.json`` (COCO results format; ``image_id`` is the file name,
boxes in original-image pixels, ``category_id`` the training dataset's id).
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.saved_config import checkpoint_run_config
from frcnn.cli.errors import run_command
from frcnn.cli.runtime_option import check_runtime, exported_detector, route_model_argument
from frcnn.config import config_dir
from frcnn.config.ranges import PREDICT_RANGES, check_ranges
from frcnn.data.batching import size_buckets
from frcnn.data.transforms import build_transform
from frcnn.evaluation import save_predictions
from frcnn.inference.detector import Detector
from frcnn.inference.predictor import Predictor, check_output_dir, list_images
from frcnn.utils.compile import compile_model
from frcnn.utils.logs import setup_logging

log = logging.getLogger("predict")


@hydra.main(config_path=str(config_dir()), config_name="predict", version_base=None)
def main(cfg: DictConfig) -> None:
    setup_logging()
    check_ranges(cfg, ranges=PREDICT_RANGES)
    output = Path(cfg.output)
    paths = list_images(cfg.input)
    check_output_dir(paths, output)
    overrides = HydraConfig.get().overrides.task
    check_runtime(cfg, overrides)

    if cfg.runtime == "onnxruntime":
        model, dataset_cfg = exported_detector(cfg, overrides)
        detector = Detector(
            model, build_transform(dataset_cfg, train=False), dataset_cfg.size_divisibility, model.class_names, "cpu"
        )
        category_ids = list(model.category_ids)
    else:
        if cfg.checkpoint is None:
            raise ValueError("give checkpoint=PATH, or onnx=DIR/model.onnx")
        checkpoint = load_checkpoint(cfg.checkpoint)
        dataset_cfg, model_cfg = checkpoint_run_config(cfg, checkpoint.config, overrides)
        detector = Detector.from_checkpoint_state(checkpoint, model_cfg, dataset_cfg, cfg.device.value)
        if cfg.compile:
            compile_model(detector.model, inference=True)
            detector.buckets = size_buckets(dataset_cfg)
        category_ids = list(checkpoint.category_ids)
    predictor = Predictor(detector, category_ids, cfg.score_threshold)
    predictions = predictor.predict(paths, cfg.batch_size, output)
    save_predictions(output / "predictions.json", predictions)
    skipped = f"; {len(predictor.unreadable)} unreadable file(s) skipped" if predictor.unreadable else ""
    detected = len(paths) - len(predictor.unreadable)
    log.info("%d detections on %d image(s) written to %s%s", len(predictions), detected, output, skipped)


def command() -> None:
    """``python scripts/predict.py`` and the ``frcnn-predict`` console command."""
    sys.argv = route_model_argument(sys.argv)
    run_command(main)


if __name__ == "__main__":
    command()
