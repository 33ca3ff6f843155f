"""Detect objects in an image or a folder of images with a trained checkpoint.

    python scripts/predict.py checkpoint=outputs/<run>/checkpoints/last.pt input=photos/ output=detections/
    python scripts/predict.py checkpoint=... input=cat.jpg output=out/ score_threshold=0.3 device=cuda
    python scripts/predict.py onnx=exported/model.onnx input=photos/ output=detections/

Writes every image with its detections drawn (class name and score) under its own file name in
``output``, and one ``predictions.json`` (COCO results format; ``image_id`` is the file name,
boxes in original-image pixels, ``category_id`` the training dataset's id). The run holds
``output``'s lock while it runs (a second prediction into it stops at once, naming this one) and
refuses an ``output`` that is not empty unless ``overwrite=true``, so that no run's
predictions.json is replaced by another's.
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frcnn.cli.errors import run_command
from frcnn.cli.runtime_option import inference_model, route_model_argument
from frcnn.config import config_dir
from frcnn.config.commands import PredictConfig
from frcnn.data.batching import size_buckets
from frcnn.data.transforms import build_transform
from frcnn.evaluation import save_predictions
from frcnn.inference.detector import Detector
from frcnn.inference.predictor import PREDICTIONS_FILE, Predictor, list_images, own_output_dir
from frcnn.utils.logs import setup_logging
from frcnn.utils.settings import typed

log = logging.getLogger("predict")


@hydra.main(config_path=str(config_dir()), config_name="predict", version_base=None)
def main(raw: DictConfig) -> None:
    setup_logging()
    cfg: PredictConfig = typed(raw)
    output = Path(cfg.output)
    paths = list_images(cfg.input)
    with own_output_dir(paths, output, cfg.overwrite):
        run = inference_model(cfg, HydraConfig.get().overrides.task)
        transform = build_transform(run.dataset_cfg, train=False)
        detector = Detector(run.model, transform, run.dataset_cfg.size_divisibility, run.class_names, run.device)
        if cfg.compile:  # padded to a few bucketed sizes: a compiled model meets a handful of shapes
            detector.buckets = size_buckets(run.dataset_cfg)
        predictor = Predictor(detector, run.category_ids, cfg.score_threshold)
        predictions = predictor.predict(paths, cfg.batch_size, output)
        save_predictions(output / PREDICTIONS_FILE, predictions)  # atomic: a tmp file renamed
    skipped = f"; {len(predictor.unreadable)} unreadable file(s) skipped" if predictor.unreadable else ""
    detected = len(paths) - len(predictor.unreadable)
    log.info("%d detections on %d image(s) written to %s%s", len(predictions), detected, output, skipped)


def command() -> None:
    """``python scripts/predict.py`` and the ``frcnn-predict`` console command."""
    sys.argv = route_model_argument(sys.argv)
    run_command(main)


if __name__ == "__main__":
    command()
