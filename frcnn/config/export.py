"""Schema of ``configs/export.yaml`` (scripts/export.py)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from frcnn.utils.settings import Range, setting

OPSET = 17  # the default ONNX opset: RoiAlign's coordinate_transformation_mode (aligned=True) needs 16


@dataclass
class ExportConfig:
    checkpoint: str = setting("???", "a training checkpoint (checkpoints/last.pt, best.pt, ...)")
    output: str = setting("???", "folder for model.onnx and model.json (created if needed)")
    opset: int = setting(OPSET, "ONNX opset; RoIAlign with aligned=true needs >= 16", Range(lambda v: v >= 11, ">= 11"))


ConfigStore.instance().store(name="export_schema", node=ExportConfig)
