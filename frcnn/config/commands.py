"""Schemas of ``configs/evaluate.yaml`` and ``configs/predict.yaml``.

Their ``model`` and ``dataset`` nodes hold the command line's overrides; a run on a checkpoint
applies them on top of the checkpoint's own config
(:func:`frcnn.checkpoint.saved_config.checkpoint_run_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from frcnn.config.schema import Device, EvaluationConfig
from frcnn.data.config import DatasetConfig
from frcnn.models.config import ModelConfig
from frcnn.utils.device import Amp


@dataclass
class EvaluateConfig:
    """Root of configs/evaluate.yaml: exactly one of ``checkpoint``, ``predictions`` and
    ``exported_model`` (with ``runtime=onnxruntime``)."""

    checkpoint: Optional[str] = None  # evaluate this trained model (builds it from its own config)
    predictions: Optional[str] = None  # or score this COCO-results file, no model
    # predictions= entries with a non-finite or negative-size box or a non-finite score: error | drop
    invalid_predictions: str = "error"
    runtime: str = "torch"  # torch | onnxruntime (runs exported_model)
    exported_model: Optional[str] = (
        None  # DIR/model.onnx of scripts/export.py; `onnx=PATH` (or `model=PATH`) on the command line
    )
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # used as is with predictions=
    model: ModelConfig = field(default_factory=ModelConfig)  # only its overridden keys are read
    device: Device = Device.auto
    batch_size: int = 4
    num_workers: Optional[int] = None  # null: dataset.num_workers
    amp: Optional[Amp] = None  # off | bf16 | fp16; null: the training run's own train.amp
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)  # coco_backend
    compile: bool = False  # torch.compile the model (runtime=torch; frcnn.utils.compile)
    voc_results_dir: Optional[str] = None  # write VOC devkit comp4_det_<set>_<class>.txt files here
    tensorboard_dir: Optional[str] = None  # add metric scalars and PR curves to this event folder


@dataclass
class PredictConfig:
    """Root of configs/predict.yaml."""

    checkpoint: Optional[str] = None  # the trained model (runtime=torch)
    runtime: str = "torch"  # torch | onnxruntime (runs exported_model)
    exported_model: Optional[str] = (
        None  # DIR/model.onnx of scripts/export.py; `onnx=PATH` (or `model=PATH`) on the command line
    )
    input: str = "???"  # an image file or a folder of images (jpg, jpeg, png, bmp, webp)
    output: str = "???"  # folder for the drawn images and predictions.json
    score_threshold: float = 0.5  # detections below are neither drawn nor written
    batch_size: int = 4
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # only overridden keys are read
    model: ModelConfig = field(default_factory=ModelConfig)  # only overridden keys are read
    device: Device = Device.auto
    compile: bool = False  # torch.compile the model (runtime=torch; frcnn.utils.compile)


def register_configs() -> None:
    """Register the schemas as ``evaluate_schema`` and ``predict_schema`` (first in the defaults)."""
    store = ConfigStore.instance()
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="predict_schema", node=PredictConfig)


register_configs()


def check_evaluate_source(cfg: DictConfig) -> None:
    """Raise ValueError unless exactly one of ``checkpoint``, ``predictions`` and (with
    ``runtime=onnxruntime``) ``exported_model`` is given."""
    sources = [cfg.checkpoint, cfg.predictions, cfg.exported_model]
    if sum(source is not None for source in sources) != 1:
        raise ValueError(
            "give exactly one of checkpoint=PATH (evaluate a model), predictions=FILE (score a results file) "
            "or onnx=DIR/model.onnx (evaluate an exported model)"
        )
