"""Schemas of ``configs/evaluate.yaml``, ``configs/predict.yaml``, ``configs/check_dataset.yaml`` and
``configs/convert_dataset.yaml``.

Their ``model`` and ``dataset`` nodes hold the command line's overrides; a run on a checkpoint
applies them on top of the checkpoint's own config
(:func:`frcnn.checkpoint.saved_config.checkpoint_run_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from hydra.core.config_store import ConfigStore

from frcnn.config.schema import EvaluationConfig
from frcnn.data.config import DatasetConfig, Split
from frcnn.models.config import ModelConfig
from frcnn.utils.device import Amp, Device
from frcnn.utils.settings import FRACTION, NONNEGATIVE, POSITIVE, setting


class Runtime(StrEnum):
    torch = "torch"  # a training checkpoint, in PyTorch
    onnxruntime = "onnxruntime"  # an exported model.onnx (scripts/export.py), in ONNX Runtime
    openvino = "openvino"  # an exported model.xml (export.py format=openvino) or model.onnx, in OpenVINO


class InvalidPredictionPolicy(StrEnum):
    """predictions= entries with a non-finite or negative-size box or a non-finite score."""

    error = "error"  # refuse the file, naming the entry
    drop = "drop"  # leave such entries out, counted in one warning


@dataclass
class EvaluateConfig:
    """Root of configs/evaluate.yaml: exactly one of ``checkpoint``, ``predictions`` and
    ``exported_model`` (with ``runtime=onnxruntime``)."""

    checkpoint: Optional[str] = setting(None, "evaluate this trained model (built from its own config)")
    predictions: Optional[str] = setting(None, "or score this COCO-results file, no model")
    invalid_predictions: InvalidPredictionPolicy = setting(
        InvalidPredictionPolicy.error, "predictions= entries with a bad box or score: error | drop"
    )
    runtime: Runtime = setting(Runtime.torch, "torch | onnxruntime | openvino (runs exported_model)")
    # `onnx=PATH` (or `model=PATH`) on the command line.
    exported_model: Optional[str] = setting(None, "DIR/model.onnx or DIR/model.xml of scripts/export.py")
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # used as is with predictions=
    model: ModelConfig = field(default_factory=ModelConfig)  # only its overridden keys are read
    device: Device = setting(Device.auto, "auto | cpu | cuda")
    batch_size: int = setting(4, "images per batch", POSITIVE)
    num_workers: Optional[int] = setting(None, "DataLoader workers (null: dataset.num_workers)", NONNEGATIVE.or_null())
    amp: Optional[Amp] = setting(None, "off | bf16 | fp16; null: the training run's own train.amp")
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)  # coco_backend
    compile: bool = setting(False, "torch.compile the model (runtime=torch; frcnn.utils.compile)")
    threads: Optional[int] = setting(
        None, "CPU threads of the runtime (null: its default, one per core)", POSITIVE.or_null()
    )
    voc_results_dir: Optional[str] = setting(None, "write VOC devkit comp4_det_<set>_<class>.txt files here")
    tensorboard_dir: Optional[str] = setting(None, "add metric scalars and PR curves to this event folder")
    analysis: bool = setting(False, "also write analysis.json and report/index.html (evaluation.analysis.*)")


@dataclass
class AnalyzeConfig(EvaluateConfig):
    """Root of configs/analyze.yaml (scripts/analyze.py): evaluate.py's keys, the analysis on."""

    analysis: bool = setting(True, "write analysis.json and report/index.html (evaluation.analysis.*)")


@dataclass
class PredictConfig:
    """Root of configs/predict.yaml."""

    checkpoint: Optional[str] = setting(None, "the trained model (runtime=torch)")
    runtime: Runtime = setting(Runtime.torch, "torch | onnxruntime | openvino (runs exported_model)")
    # `onnx=PATH` (or `model=PATH`) on the command line.
    exported_model: Optional[str] = setting(None, "DIR/model.onnx or DIR/model.xml of scripts/export.py")
    input: str = setting("???", "an image file or a folder of images (jpg, jpeg, png, bmp, webp)")
    output: str = setting("???", "folder for the drawn images and predictions.json")
    overwrite: bool = setting(False, "write into a non-empty output, replacing only the files written")
    score_threshold: float = setting(0.5, "detections below are neither drawn nor written", FRACTION)
    batch_size: int = setting(4, "images per batch", POSITIVE)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # only overridden keys are read
    model: ModelConfig = field(default_factory=ModelConfig)  # only overridden keys are read
    device: Device = setting(Device.auto, "auto | cpu | cuda")
    compile: bool = setting(False, "torch.compile the model (runtime=torch; frcnn.utils.compile)")
    threads: Optional[int] = setting(
        None, "CPU threads of the runtime (null: its default, one per core)", POSITIVE.or_null()
    )


@dataclass
class CheckDatasetConfig:
    """Root of configs/check_dataset.yaml (scripts/check_dataset.py)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    # Its anchors (model.anchors) and model.rpn.pos_iou_thresh: the training boxes are compared with
    # them (frcnn.data.anchor_fit); the group is train.yaml's (model=resnet50_fpn ...).
    model: ModelConfig = field(default_factory=ModelConfig)
    splits: list[Split] = setting([Split.train, Split.test], "the splits to check: train | test")
    images: bool = setting(True, "decode every image too (false: annotations only)")
    num_workers: int = setting(2, "processes decoding the images", NONNEGATIVE)


class DatasetOutput(StrEnum):
    """The layouts scripts/convert_dataset.py writes (frcnn.data.convert)."""

    coco = "coco"  # images/ + annotations/{train,val}.json
    voc = "voc"  # JPEGImages/, Annotations/<id>.xml, ImageSets/Main/{train,val}.txt
    yolo = "yolo"  # data.yaml, images/{train,val}/, labels/{train,val}/<stem>.txt


@dataclass
class ConvertDatasetConfig:
    """Root of configs/convert_dataset.yaml (scripts/convert_dataset.py)."""

    output: str = setting("???", "the folder to write the converted dataset to (new or empty)")
    format: DatasetOutput = setting("???", "the layout to write: coco | voc | yolo")
    overwrite: bool = setting(False, "write into a non-empty output, replacing only the files written")
    dataset: DatasetConfig = field(default_factory=DatasetConfig)


def register_configs() -> None:
    """Register the schemas as ``evaluate_schema``, ``analyze_schema``, ``predict_schema``,
    ``check_dataset_schema`` and ``convert_dataset_schema`` (first in their configs' defaults)."""
    store = ConfigStore.instance()
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="analyze_schema", node=AnalyzeConfig)
    store.store(name="predict_schema", node=PredictConfig)
    store.store(name="check_dataset_schema", node=CheckDatasetConfig)
    store.store(name="convert_dataset_schema", node=ConvertDatasetConfig)


register_configs()


def check_evaluate_source(cfg: EvaluateConfig) -> None:
    """Raise ValueError unless exactly one of ``checkpoint``, ``predictions`` and (with
    ``runtime=onnxruntime``) ``exported_model`` is given."""
    sources = [cfg.checkpoint, cfg.predictions, cfg.exported_model]
    if sum(source is not None for source in sources) != 1:
        raise ValueError(
            "give exactly one of checkpoint=PATH (evaluate a model), predictions=FILE (score a results file) "
            "or onnx=DIR/model.onnx (evaluate an exported model)"
        )
