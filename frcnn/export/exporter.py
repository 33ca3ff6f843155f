"""Export a training checkpoint to ``model.onnx`` + ``model.json``.

The graph is traced with PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): torchvision registers its ONNX translations of ``roi_align`` and
``roi_pool`` (``RoiAlign``, ``MaxRoiPool``) for that exporter, and tracing records the
data-dependent steps (NMS, the valid proposals) as ONNX operators with dynamic shapes. The
torch.export-based exporter has neither the torchvision translations nor a way to trace them.
"""

from __future__ import annotations

import logging
import os
import warnings
from importlib import metadata as package_metadata
from pathlib import Path

import onnx
import torch
from omegaconf import OmegaConf

from frcnn.checkpoint.restore import open_for_inference
from frcnn.config.export import OPSET
from frcnn.data.transforms import build_transform
from frcnn.export.graph import OUTPUT_NAMES, DetectorGraph
from frcnn.export.metadata import INPUTS, ONNX_FILE, ExportMetadata, Preprocessing
from frcnn.models import FasterRCNN

logger = logging.getLogger(__name__)


def frcnn_version() -> str:
    try:
        return package_metadata.version("frcnn")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def export_graph(model: FasterRCNN) -> DetectorGraph:
    """The export-ready graph of a detector (C4 or FPN)."""
    if not isinstance(model, FasterRCNN):
        raise TypeError(f"cannot export a {type(model).__name__}: only frcnn.models.FasterRCNN is supported")
    return DetectorGraph(model)


def sample_inputs(preprocessing: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images of different sizes padded into one batch: what the exporter traces with
    (any sizes work afterwards; two images keep the batch dimension from being specialised)."""
    divisor = max(preprocessing.size_divisibility, 1)
    height = -(-preprocessing.min_size // divisor) * divisor
    width = -(-min(preprocessing.max_size, preprocessing.min_size * 4 // 3) // divisor) * divisor
    images = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[height, width], [max(height * 3 // 4, 1), max(width * 3 // 4, 1)]])
    images[1, :, sizes[1, 0] :, :] = 0
    images[1, :, :, sizes[1, 1] :] = 0
    return images, sizes


def write_onnx(graph: DetectorGraph, inputs: tuple[torch.Tensor, torch.Tensor], path: Path, opset: int = OPSET) -> None:
    """Trace ``graph`` on ``inputs`` and write the ONNX file (dynamic batch, height and width)."""
    batch_axis = {0: "batch"}
    dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}, "image_sizes": batch_axis}
    dynamic_axes.update({name: batch_axis for name in OUTPUT_NAMES})
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every Python value it records as a constant; the ones in the
        # graph are true constants (coder std, thresholds), and tests run the export at other sizes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*advanced indexing.*")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(
            graph.eval(),
            inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))


def _prepare_output(output: str | os.PathLike) -> Path:
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output {output} is a file, not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the output folder {output}: {error.strerror or error}") from error
    if not os.access(output, os.W_OK):
        raise PermissionError(f"output folder {output} is not writable")
    return output


def export_checkpoint(
    checkpoint_path: str | os.PathLike, output: str | os.PathLike, opset: int = OPSET
) -> ExportMetadata:
    """Write ``output/model.onnx`` and ``output/model.json`` for a training checkpoint.

    Raises FileNotFoundError / CheckpointError (a ValueError: a missing, unreadable or foreign
    checkpoint, or one lacking a key, naming it), NotADirectoryError / OSError / PermissionError
    (an output that is a file, cannot be created or is not writable).
    """
    opened = open_for_inference(checkpoint_path)
    checkpoint, model, model_cfg, dataset_cfg = opened.checkpoint, opened.model, opened.model_cfg, opened.dataset_cfg
    output = _prepare_output(output)
    transform = build_transform(dataset_cfg, train=False)
    preprocessing = Preprocessing(
        min_size=int(transform.min_sizes[0]),
        max_size=int(transform.max_size),
        mean=[float(m) for m in transform.mean],
        std=[float(s) for s in transform.std],
        size_divisibility=int(dataset_cfg.size_divisibility),
    )
    graph = export_graph(model)
    # Written under a temporary name first: a failed export never leaves a half-written model.onnx.
    tmp = output / f".{ONNX_FILE}.{os.getpid()}.tmp"
    try:
        write_onnx(graph, sample_inputs(preprocessing), Path(tmp), opset)
        os.replace(tmp, output / ONNX_FILE)
    finally:
        Path(tmp).unlink(missing_ok=True)
    roi = model_cfg.roi_head
    result = ExportMetadata(
        architecture=model_cfg.architecture,
        pooler=roi.pooler,
        opset=opset,
        class_names=list(checkpoint.class_names),
        category_ids=list(checkpoint.category_ids),
        preprocessing=preprocessing,
        postprocessing={
            "score_thresh": roi.score_thresh,
            "nms_thresh": roi.nms_thresh,
            "detections_per_image": graph.detections_per_image,
            "rpn_pre_nms_top_n": graph.pre_nms_top_n,
            "rpn_post_nms_top_n": graph.post_nms_top_n,
            "rpn_nms_thresh": graph.rpn_nms_thresh,
        },
        checkpoint={"path": str(Path(checkpoint_path).resolve()), "iteration": checkpoint.iteration},
        config=OmegaConf.to_container(OmegaConf.create(checkpoint.config), resolve=True),
        frcnn_version=frcnn_version(),
    )
    result.write(output)
    logger.info(
        "exported %s to %s (%s, %d classes)", checkpoint_path, output / ONNX_FILE, roi.pooler, len(result.class_names)
    )
    return result
