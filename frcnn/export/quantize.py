"""int8 post-training quantisation of an exported detector, with its accuracy checked.

Both runtimes get static int8: weights per output channel, activations calibrated on
``calibration_images`` training images drawn with a seed and put through the model's own test-time
preprocessing (resize, normalise, pad), one image a batch. ONNX Runtime's
``quantize_static`` writes a QDQ ``model.onnx`` (its CPU provider fuses each QuantizeLinear /
DequantizeLinear pair around a Conv or Gemm into an int8 kernel); NNCF's ``quantize`` does the
same to the OpenVINO IR. Only convolutions and fully connected layers are quantised, and the two
box regressors (the RPN's ``deltas`` convolution and the RoI head's ``cls_loc`` layer) stay in
fp32: they set the boxes' coordinates, where a quantisation step is a shift in pixels, and they
cost little time.

:func:`check_accuracy` then scores the fp32 and the int8 model on the test split (VOC07 mAP, IoU
0.5) and refuses a drop beyond ``max_map_drop``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from frcnn.data import build_dataset, build_test_loader
from frcnn.data.batching import image_batch
from frcnn.data.image_io import read_image
from frcnn.evaluation import DetectionEvaluator, run_inference
from frcnn.export.runtime import ExportedDetector

logger = logging.getLogger(__name__)

# Node names (ONNX, and the IR's, which keep them) of the layers left in fp32: the box regressors.
FP32_LAYERS = r".*/(deltas|cls_loc)/.*"
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


def calibration_inputs(detector: ExportedDetector, dataset_cfg, count: int, seed: int = 0) -> list[dict]:
    """``count`` training images of ``dataset_cfg`` (all of them when it has fewer), drawn with
    ``seed``, each as the graph's inputs ``{"images": float32 [1, 3, H, W], "image_sizes": int64
    [1, 2]}`` through ``detector``'s preprocessing."""
    dataset = build_dataset(dataset_cfg, "train")
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    transform = detector.transform()
    divisibility = detector.metadata.preprocessing.size_divisibility
    inputs = []
    for index in order.tolist():
        batch = image_batch([read_image(dataset.image_path(index))], transform, divisibility)
        inputs.append(
            {
                "images": batch.images.numpy(),
                "image_sizes": np.asarray(batch.image_sizes, dtype=np.int64).reshape(-1, 2),
            }
        )
    return inputs


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a list of input dicts."""

    def __init__(self, inputs: list[dict]):
        self.inputs = iter(inputs)

    def get_next(self) -> dict | None:
        return next(self.inputs, None)


def fp32_nodes(model_path: Path) -> list[str]:
    """The quantisable nodes of an ONNX file that :data:`FP32_LAYERS` keeps in fp32."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in QUANTIZED_OPS and re.fullmatch(FP32_LAYERS, node.name)]


def quantize_onnx(fp32_path: Path, int8_path: Path, inputs: list[dict]) -> None:
    """Static QDQ int8 of ``fp32_path`` written to ``int8_path`` (calibrated on ``inputs``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32_path),
        str(int8_path),
        _Reader(inputs),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        per_channel=True,
        # uint8 activations with int8 weights: x86's int8 kernels without VNNI (AVX2) are u8 x s8;
        # measured 1.8x faster than fp32 at 608x800, where int8 activations were 1.4x slower than fp32
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=fp32_nodes(fp32_path),
        calibrate_method=CalibrationMethod.MinMax,
    )


def quantize_openvino(model, inputs: list[dict]):
    """NNCF's int8 quantisation of the ``openvino.Model`` (calibrated on ``inputs``), a new model."""
    import nncf

    import frcnn.export.openvino  # noqa: F401 (first: it turns OpenVINO's and NNCF's telemetry off)

    nncf_logger = logging.getLogger("nncf")
    nncf_logger.setLevel(max(nncf_logger.level, logging.WARNING))  # its progress bars and notes
    return nncf.quantize(
        model,
        nncf.Dataset(inputs),
        subset_size=len(inputs),
        ignored_scope=nncf.IgnoredScope(patterns=[FP32_LAYERS], validate=False),
    )


def test_map(detector: ExportedDetector, dataset_cfg, batch_size: int = 4) -> float:
    """VOC07 mAP (IoU 0.5) of ``detector`` on the test split of ``dataset_cfg``."""
    loader = build_test_loader(dataset_cfg, batch_size)
    metrics = run_inference(detector, loader, DetectionEvaluator(loader.dataset), torch.device("cpu"))
    return metrics["voc07"]["mAP"]


def check_accuracy(map_fp32: float, map_int8: float, max_map_drop: float, calibration_images: int) -> dict:
    """model.json's ``quantization`` entry; a ValueError naming the drop when it exceeds ``max_map_drop``."""
    drop = map_fp32 - map_int8
    if drop > max_map_drop:
        raise ValueError(
            f"int8 loses {drop:.4f} VOC07 mAP on the test split ({map_fp32:.4f} -> {map_int8:.4f}), more than "
            f"max_map_drop={max_map_drop:g}: nothing exported (raise max_map_drop, calibrate on more images with "
            "calibration_images=, or export precision=fp32)"
        )
    return {
        "precision": "int8",
        "map_fp32": map_fp32,
        "map_int8": map_int8,
        "drop": drop,
        "calibration_images": calibration_images,
    }
