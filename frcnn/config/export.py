"""Schema of ``configs/export.yaml`` (scripts/export.py)."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Optional

from hydra.core.config_store import ConfigStore

from frcnn.utils.settings import FRACTION, POSITIVE, Range, setting

OPSET = 17  # the default ONNX opset; what a model's graph needs: frcnn.export.opset.minimum_opset (12-16)


class ExportFormat(StrEnum):
    onnx = "onnx"  # model.onnx, for ONNX Runtime (or any ONNX runtime)
    openvino = "openvino"  # model.xml + model.bin, OpenVINO IR


class Precision(StrEnum):
    fp32 = "fp32"
    int8 = "int8"  # post-training quantisation, calibrated on training images, accuracy checked


@dataclass
class ExportConfig:
    checkpoint: str = setting("???", "a training checkpoint (checkpoints/last.pt, best.pt, ...)")
    output: str = setting("???", "folder for model.onnx and model.json (created if needed)")
    opset: int = setting(
        OPSET,
        "ONNX opset: >= 12; >= 16 for a C4 RoIAlign head with aligned=true",
        Range(lambda v: v >= 12, ">= 12 (the lowest opset whose graph ONNX Runtime runs for any frcnn model)"),
    )

    format: ExportFormat = setting(ExportFormat.onnx, "onnx (model.onnx) | openvino (model.xml + model.bin)")
    precision: Precision = setting(Precision.fp32, "fp32 | int8 (quantised, its test-set mAP checked)")
    calibration_images: int = setting(300, "int8: training images the quantiser calibrates on (seeded)", POSITIVE)
    max_map_drop: float = setting(0.01, "int8: most VOC07 mAP the quantised model may lose, else no export", FRACTION)
    threads: Optional[int] = setting(None, "threads of the export's checks (null: one per core)", POSITIVE.or_null())
    overwrite: bool = setting(False, "export into a folder that holds files, replacing only the files written")


ConfigStore.instance().store(name="export_schema", node=ExportConfig)
