"""OpenVINO: the exported graph as OpenVINO IR (``model.xml`` + ``model.bin``) and its CPU runner.

OpenVINO reads frcnn's ``model.onnx`` as it is (NMS, RoIAlign / RoIPool and the dynamic batch,
height and width included); :func:`write_openvino` converts it once to IR, kept in fp32
(``compress_to_fp16=False``: the CPU plugin computes in fp32 either way, and int8 is the
quantiser's choice, :mod:`frcnn.export.quantize`). :class:`OpenVinoDetector` runs an IR file (or an
ONNX file) behind the same interface as :class:`~frcnn.export.runtime.OnnxDetector`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# OpenVINO's converter (imported by ``import openvino``) and NNCF report usage over the network, from
# a background thread, whenever the openvino-telemetry package imports. frcnn sends nothing: with
# that package unimportable in this process, both fall back to their no-op stubs.
sys.modules.setdefault("openvino_telemetry", None)

import openvino as ov  # noqa: E402 (after the telemetry is turned off)

from frcnn.export.runtime import ExportedDetector  # noqa: E402

# OpenVINO's converter imports absl.logging (where installed), whose handler keeps the sys.stderr of
# that moment and closes it when logging is reconfigured (logging.shutdown, as Hydra's set-up runs
# it) unless it is the current one: in a notebook or a test whose stderr has since been replaced,
# the old stream would be closed under its owner. The process's own stderr is never closed.
if "absl.logging" in sys.modules:
    sys.modules["absl.logging"].get_absl_handler().python_handler.stream = sys.__stderr__


def write_openvino(model: ov.Model | str | Path, xml_path: Path) -> None:
    """Save ``model`` (an ``ov.Model``, or an ONNX file to convert) as IR at ``xml_path`` (and
    the ``.bin`` beside it), weights kept in their precision."""
    if not isinstance(model, ov.Model):
        model = ov.convert_model(str(model))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def read_openvino(xml_path: Path) -> ov.Model:
    """The ``openvino.Model`` of an IR file (or an ONNX file)."""
    return ov.Core().read_model(str(xml_path))


def compile_options(threads: int | None) -> dict:
    """The CPU plugin's settings: ``threads`` inference threads (None: OpenVINO's default, one per
    physical core) and the latency hint (one request at a time, as predict.py and evaluate.py run)."""
    options = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        options["INFERENCE_NUM_THREADS"] = int(threads)
    return options


class OpenVinoDetector(ExportedDetector):
    """An exported ``model.xml`` (or ``model.onnx``) compiled for OpenVINO's CPU plugin."""

    runtime = "OpenVINO"

    def __init__(self, model_path: str | Path, threads: int | None = None):
        super().__init__(model_path)
        try:
            self.compiled = ov.Core().compile_model(str(model_path), "CPU", compile_options(threads))
        except Exception as error:  # OpenVINO raises RuntimeError with its own report for a bad file
            raise ValueError(f"OpenVINO cannot load {model_path}: {str(error).splitlines()[0]}") from error
        self.request = self.compiled.create_infer_request()

    def run(self, images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        results = self.request.infer({"images": images, "image_sizes": image_sizes})
        return [np.asarray(results[output]) for output in self.compiled.outputs]
