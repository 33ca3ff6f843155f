"""Run an exported detector behind the PyTorch model's interface.

:class:`ExportedDetector` is called like an eval-mode :class:`~frcnn.models.FasterRCNN`
(``detector(images, image_sizes)`` -> per image ``boxes``, ``scores``, ``labels``), so the
evaluation loop and the predictor run any runtime unchanged: :class:`OnnxDetector` runs
``model.onnx`` in ONNX Runtime, :class:`frcnn.export.openvino.OpenVinoDetector` ``model.xml`` in
OpenVINO; :func:`load_exported` picks by the file's suffix.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from frcnn.data.transforms import DetectionTransform
from frcnn.export.metadata import ExportMetadata, read_metadata


class GraphOptimization(StrEnum):
    """ONNX Runtime's graph optimisation levels."""

    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


OPTIMIZATION_LEVELS = {
    GraphOptimization.disable: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    GraphOptimization.basic: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    GraphOptimization.extended: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    GraphOptimization.all: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(threads: int | None = None, optimization: str = "all") -> ort.SessionOptions:
    """ONNX Runtime options: ``threads`` intra-op threads (None: one per physical core) and a
    graph optimisation level of :data:`OPTIMIZATION_LEVELS`."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {list(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one branch at a time: the graph is a chain
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


class ExportedDetector(nn.Module):
    """An exported detector file with its ``model.json`` beside it, run on the CPU by a runtime.
    ``forward(images [B, 3, H, W], image_sizes [B, 2] or list of (h, w))`` -> per image
    ``{"boxes" [D, 4], "scores" [D], "labels" [D]}`` CPU tensors, as the eval-mode model returns;
    a subclass gives :meth:`run`, the graph's raw outputs."""

    runtime = ""  # the runtime's name in messages

    def __init__(self, model_path: str | Path):
        super().__init__()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"exported model {model_path} not found (scripts/export.py writes it)")
        self.model_path = model_path
        self.metadata: ExportMetadata = read_metadata(model_path)
        self.eval()

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.class_names)

    @property
    def category_ids(self) -> list:
        return list(self.metadata.category_ids)

    def transform(self) -> DetectionTransform:
        """The test-time resize and normalisation the graph expects."""
        pre = self.metadata.preprocessing
        return DetectionTransform((pre.min_size,), pre.max_size, 0.0, tuple(pre.mean), tuple(pre.std))

    def run(self, images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        """The graph's raw outputs (boxes, scores, labels, num_detections; see ``model.json``)
        for float32 ``images`` [B, 3, H, W] and int64 ``image_sizes`` [B, 2]."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, image_sizes) -> list[dict[str, torch.Tensor]]:
        images = images.detach().float().cpu().contiguous().numpy()
        image_sizes = torch.as_tensor(image_sizes, dtype=torch.int64).reshape(-1, 2).numpy()
        boxes, scores, labels, counts = self.run(images, image_sizes)
        return [
            {"boxes": torch.from_numpy(b[:n]), "scores": torch.from_numpy(s[:n]), "labels": torch.from_numpy(c[:n])}
            for b, s, c, n in zip(boxes, scores, labels, counts.tolist())
        ]


class OnnxDetector(ExportedDetector):
    """An exported ``model.onnx`` in an ONNX Runtime CPU session (``threads`` intra-op threads,
    None: one per physical core; ``optimization``: a level of :data:`OPTIMIZATION_LEVELS`)."""

    runtime = "ONNX Runtime"

    def __init__(self, model_path: str | Path, threads: int | None = None, optimization: str = "all"):
        super().__init__(model_path)
        try:
            self.session = ort.InferenceSession(
                str(model_path), session_options(threads, optimization), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ONNX Runtime raises its own exception types for a bad file
            raise ValueError(f"ONNX Runtime cannot load {model_path}: {error}") from error

    def run(self, images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"images": images, "image_sizes": image_sizes})


def load_exported(model_path: str | Path, threads: int | None = None, runtime: str | None = None) -> ExportedDetector:
    """The exported model at ``model_path`` in ``runtime`` (``onnxruntime`` | ``openvino``; None: by the
    file's suffix, ``.xml`` in OpenVINO, else ONNX Runtime)."""
    if runtime == "openvino" or (runtime is None and Path(model_path).suffix == ".xml"):
        from frcnn.export.openvino import OpenVinoDetector  # OpenVINO loads only when asked for

        return OpenVinoDetector(model_path, threads)
    return OnnxDetector(model_path, threads)
