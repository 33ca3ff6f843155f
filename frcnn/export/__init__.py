"""Deployment: export a trained detector to ONNX (``model.onnx`` + ``model.json``) and run the
exported file with ONNX Runtime."""

from frcnn.export.exporter import export_checkpoint
from frcnn.export.graph import DetectorGraph
from frcnn.export.metadata import ExportMetadata, read_metadata
from frcnn.export.runtime import OnnxDetector

__all__ = ["DetectorGraph", "ExportMetadata", "OnnxDetector", "export_checkpoint", "read_metadata"]
