"""Export a training checkpoint to ``model.onnx`` (or OpenVINO's ``model.xml`` + ``model.bin``)
and ``model.json``, in fp32 or int8.

The graph is traced with PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): torchvision registers its ONNX translations of ``roi_align`` and
``roi_pool`` (``RoiAlign``, ``MaxRoiPool``) for that exporter, and tracing records the
data-dependent steps (NMS, the valid proposals) as ONNX operators with dynamic shapes. The
torch.export-based exporter has neither the torchvision translations nor a way to trace them.

An export is written into a staging folder inside ``output`` and moved into place only when it
is complete and its own runtime has loaded it and run it once (and, for int8, its test-set mAP is
within ``max_map_drop`` of the fp32 model's): a failed export leaves nothing behind, and a folder
that already holds files is written into only with ``overwrite=True``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
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
from frcnn.export.metadata import INPUTS, ONNX_FILE, OPENVINO_FILE, ExportMetadata, Preprocessing
from frcnn.export.opset import check_opset
from frcnn.export.runtime import ExportedDetector, load_exported
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


def _prepare_output(output: str | os.PathLike, overwrite: bool) -> tuple[Path, bool]:
    """The output folder, created if needed (and whether it was); a folder holding files is
    refused unless ``overwrite``."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output {output} is a file, not a folder")
    created = not output.exists()
    if not created:
        held = sorted(path.name for path in output.iterdir() if not path.name.startswith(".export-"))
        if held and not overwrite:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise ValueError(
                f"output {output} already holds {shown}: give another output, or overwrite=true to replace "
                "the files this export writes"
            )
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the output folder {output}: {error.strerror or error}") from error
    if not os.access(output, os.W_OK):
        raise PermissionError(f"output folder {output} is not writable")
    return output, created


def _check_runs(detector: ExportedDetector, preprocessing: Preprocessing) -> None:
    """Run the export once on the traced sample inputs: a graph its runtime cannot execute fails here."""
    images, sizes = sample_inputs(preprocessing)
    try:
        detector(images, sizes)
    except Exception as error:  # each runtime raises its own types
        raise ValueError(f"{detector.runtime} loads {detector.model_path.name} but cannot run it: {error}") from error


def export_checkpoint(
    checkpoint_path: str | os.PathLike,
    output: str | os.PathLike,
    opset: int = OPSET,
    format: str = "onnx",
    precision: str = "fp32",
    calibration_images: int = 300,
    max_map_drop: float = 0.01,
    threads: int | None = None,
    overwrite: bool = False,
) -> ExportMetadata:
    """Write ``output/model.onnx`` (``format="onnx"``) or ``output/model.xml`` + ``model.bin``
    (``"openvino"``) and ``output/model.json`` for a training checkpoint.

    precision ``"int8"``: quantised (:mod:`frcnn.export.quantize`) on ``calibration_images``
    training images, then refused unless its test-set VOC07 mAP is within ``max_map_drop`` of the
    fp32 model's (both in ``model.json``). threads: the runtimes' threads in those checks.
    Raises FileNotFoundError / CheckpointError (a ValueError: a missing, unreadable or foreign
    checkpoint, or one lacking a key, naming it), NotADirectoryError / OSError / PermissionError
    (an output that is a file, cannot be created or is not writable), ValueError (an output that
    holds files without ``overwrite``, an export its runtime cannot run, too large an int8 drop).
    """
    if format not in ("onnx", "openvino") or precision not in ("fp32", "int8"):
        raise ValueError(f"format must be onnx | openvino and precision fp32 | int8, got {format!r}, {precision!r}")
    opened = open_for_inference(checkpoint_path)
    check_opset(opset, opened.model_cfg)
    output, created = _prepare_output(output, overwrite)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=output))
    try:
        metadata = _write_model(opened, checkpoint_path, staging, opset)
        if format == "openvino":
            _to_openvino(staging, metadata)
        model_path = staging / metadata.model_file
        if precision == "int8":
            metadata.quantization = _quantize(model_path, metadata, opened.dataset_cfg, calibration_images,
                                              max_map_drop, threads)  # fmt: skip
            metadata.precision = "int8"
        metadata.write(staging)
        _check_runs(load_exported(model_path, threads), metadata.preprocessing)
        for path in staging.iterdir():
            os.replace(path, output / path.name)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s (%s, %s, %d classes)", checkpoint_path, output / metadata.model_file,
                metadata.pooler, metadata.precision, len(metadata.class_names))  # fmt: skip
    return metadata


def _write_model(opened, checkpoint_path, folder: Path, opset: int) -> ExportMetadata:
    """``folder/model.onnx`` of the opened checkpoint and its metadata (not yet written)."""
    checkpoint, model, model_cfg, dataset_cfg = opened.checkpoint, opened.model, opened.model_cfg, opened.dataset_cfg
    transform = build_transform(dataset_cfg, train=False)
    preprocessing = Preprocessing(
        min_size=int(transform.min_sizes[0]),
        max_size=int(transform.max_size),
        mean=[float(m) for m in transform.mean],
        std=[float(s) for s in transform.std],
        size_divisibility=int(dataset_cfg.size_divisibility),
    )
    graph = export_graph(model)
    write_onnx(graph, sample_inputs(preprocessing), folder / ONNX_FILE, opset)
    roi = model_cfg.roi_head
    return ExportMetadata(
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


def _to_openvino(folder: Path, metadata: ExportMetadata) -> None:
    """Convert ``folder/model.onnx`` to OpenVINO IR beside it and drop the ONNX file."""
    from frcnn.export.openvino import write_openvino  # OpenVINO loads only when asked for

    write_openvino(folder / ONNX_FILE, folder / OPENVINO_FILE)
    (folder / ONNX_FILE).unlink()
    metadata.onnx_file, metadata.openvino_file = None, OPENVINO_FILE


def _quantize(model_path: Path, metadata: ExportMetadata, dataset_cfg, count: int, max_drop: float, threads) -> dict:
    """Replace the fp32 model at ``model_path`` by its int8 quantisation, once its test-set mAP is
    checked against the fp32 one's; returns model.json's ``quantization`` entry."""
    from frcnn.export import quantize

    metadata.write(model_path.parent)  # the runtimes read it beside the model
    fp32 = load_exported(model_path, threads)
    inputs = quantize.calibration_inputs(fp32, dataset_cfg, count)
    logger.info("int8: calibrating on %d training images", len(inputs))
    int8_path = model_path.with_name("int8" + model_path.suffix)
    if model_path.suffix == ".xml":
        from frcnn.export.openvino import read_openvino, write_openvino

        write_openvino(quantize.quantize_openvino(read_openvino(model_path), inputs), int8_path)
    else:
        quantize.quantize_onnx(model_path, int8_path, inputs)
    map_fp32 = quantize.test_map(fp32, dataset_cfg)
    map_int8 = quantize.test_map(load_exported(int8_path, threads), dataset_cfg)
    logger.info("int8: test-split VOC07 mAP %.4f (fp32 %.4f)", map_int8, map_fp32)
    entry = quantize.check_accuracy(map_fp32, map_int8, max_drop, len(inputs))
    for suffix in (model_path.suffix, ".bin") if model_path.suffix == ".xml" else (model_path.suffix,):
        os.replace(int8_path.with_suffix(suffix), model_path.with_suffix(suffix))
    return entry
