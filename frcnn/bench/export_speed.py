"""Section ``export``: CPU latency of the exported detector, PyTorch eager vs ONNX Runtime vs
torchvision's composition.

:func:`benchmark_export` builds the benchmark's detector (random weights), exports it as
``scripts/export.py`` does, and times inference of one image and of a batch, interleaved in one
process with the same weights and inputs: this model in eager PyTorch, the ONNX file in ONNX
Runtime (each graph-optimisation level, the headline at ``optimization``; and, for a C4 RoIAlign
model, the graph that runs layer4's first 1x1 convolutions per RoI, :mod:`frcnn.export.hoist`,
as ``onnxruntime_per_roi``), and torchvision's ``FasterRCNN`` composed as the same model
(:func:`frcnn.bench.reference.torchvision_detector`).
``onnx_infer_ratio`` is ONNX Runtime's median time / torchvision's for one image (below 1:
ONNX Runtime is faster); ``onnx_infer_ratio_batch`` the same for the batch.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

from frcnn.bench.reference import ReferenceDetector, torchvision_detector
from frcnn.bench.timing import interleaved_times, medians
from frcnn.data.transforms import resized_size
from frcnn.export.exporter import write_onnx
from frcnn.export.graph import DetectorGraph
from frcnn.export.runtime import OPTIMIZATION_LEVELS, session_options
from frcnn.models import build_model

logger = logging.getLogger(__name__)


def padded_test_size(min_size: int, max_size: int, size_divisibility: int, aspect: float = 4 / 3) -> tuple[int, int]:
    """(h, w) of a landscape image of ``aspect`` (w / h) after the test resize, padded to the divisor."""
    height, width = resized_size(1000, round(1000 * aspect), min_size, max_size)
    return tuple(-(-side // size_divisibility) * size_divisibility for side in (height, width))


def _session(path: Path, threads: int, level: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(threads, level), providers=["CPUExecutionProvider"])


def onnx_sessions(model, example: tuple[torch.Tensor, torch.Tensor], threads: int, optimization: str) -> dict:
    """ONNX Runtime CPU sessions of ``model`` exported as ``scripts/export.py`` exports it (traced
    on ``example``: images [B, 3, H, W], image_sizes [B, 2] as (h, w)): one per graph-optimisation
    level and, when the export hoists layer4's first 1x1 convolutions before RoIAlign, ``per_roi``
    (the graph without that, at ``optimization``)."""
    graph = DetectorGraph(model)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.onnx"
        write_onnx(graph, example, path)
        sessions = {level: _session(path, threads, level) for level in OPTIMIZATION_LEVELS}
        if graph.hoisted is not None:
            write_onnx(DetectorGraph(model, hoist=False), example, path)
            sessions["per_roi"] = _session(path, threads, optimization)
    return sessions


def _runners(model, reference, sessions: dict, optimization: str) -> dict:
    """name -> ``run(images, sizes)``: ``pytorch`` (``model``), ``onnxruntime`` (at ``optimization``),
    ``torchvision`` (``reference``, frcnn's call contract) and ``onnxruntime_<level>`` for every other session."""

    def onnxruntime(session):
        return lambda images, sizes: session.run(None, {"images": images.numpy(), "image_sizes": sizes.numpy()})

    def eager(detector):
        def run(images, sizes):
            with torch.inference_mode():
                detector(images, sizes)

        return run

    runners = {"pytorch": eager(model), "onnxruntime": onnxruntime(sessions[optimization]),
               "torchvision": eager(reference)}  # fmt: skip
    runners.update({f"onnxruntime_{level}": onnxruntime(s) for level, s in sessions.items() if level != optimization})
    return runners


def benchmark_export(
    model_cfg,
    image_size: tuple[int, int],
    *,
    batch_size: int = 4,
    num_classes: int = 20,
    threads: int | None = None,
    optimization: str = "all",
    warmup_iters: int = 2,
    timed_iters: int = 10,
    seed: int = 0,
) -> dict:
    """Median CPU inference times (seconds) of one ``image_size`` (h, w) image and of a batch of
    ``batch_size``; see the module docstring. ``threads``: ONNX Runtime's intra-op threads
    (None: PyTorch's thread count, so that both use the same cores)."""
    threads = torch.get_num_threads() if threads is None else threads
    torch.manual_seed(seed)
    model = build_model(model_cfg, num_classes).eval()
    reference = ReferenceDetector(torchvision_detector(model, model_cfg)).eval()
    height, width = image_size
    batch = torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(seed))
    inputs = {"single": (batch[:1], torch.tensor([[height, width]])),
              "batch": (batch, torch.tensor([[height, width]] * batch_size))}  # fmt: skip
    runners = _runners(model, reference, onnx_sessions(model, inputs["batch"], threads, optimization), optimization)
    runs = {case: {name: functools.partial(run, *args) for name, run in runners.items()}
            for case, args in inputs.items()}  # fmt: skip
    median = medians(interleaved_times(runs, warmup_iters, timed_iters))
    result = {
        "architecture": model_cfg.architecture,
        "image_size": [height, width],
        "batch_size": batch_size,
        "num_classes": num_classes,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": threads,
        "optimization": optimization,
        "onnxruntime_version": ort.__version__,
        "median_seconds": median,
        "onnx_infer_ratio": median["single"]["onnxruntime"] / median["single"]["torchvision"],
        "onnx_infer_ratio_batch": median["batch"]["onnxruntime"] / median["batch"]["torchvision"],
        "pytorch_ratio": median["single"]["pytorch"] / median["single"]["torchvision"],
    }
    logger.info("export latency (s): %s; onnx_infer_ratio %.3f (batch %.3f)",
                median, result["onnx_infer_ratio"], result["onnx_infer_ratio_batch"])  # fmt: skip
    return result
